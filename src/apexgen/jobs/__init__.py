"""The jobs: ``toy`` (the 2-D benchmark with an exact answer), ``pixel`` (the pixel-space text-to-image job:
Fashion-MNIST, teacher → student → evaluation), ``real_backbones`` (distilling diffusers backbones: train,
export, sample, generate, bench). Each holds only what is specific to it; what they share is one level up,
except ``sample_request.py``: what ``apexgen sample`` draws, in both text-to-image jobs."""
