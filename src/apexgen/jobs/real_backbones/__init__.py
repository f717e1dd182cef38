"""Training, export, sampling and benchmarking on the real backbones (Qwen-Image, SANA, SD3/3.5, FLUX,
Z-Image) loaded from diffusers folders or hub ids: the ``apexgen train|export|sample|bench`` commands.

Modules: ``config`` (the run's settings and the rules checked before any work), ``pipeline`` (loading the
stock pipeline with its components checked), ``estimate`` (the dry-run memory estimate), ``train``,
``preview``, ``export``, ``sample``, ``bench`` and ``commands`` (the command-line wiring)."""
