"""The main job: one-step text-to-image on Fashion-MNIST with a real diffusers backbone, end to end on CPU."""
