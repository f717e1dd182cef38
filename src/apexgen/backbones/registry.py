"""Backbone names → their adapter classes, one line per backbone. Everything else a backbone needs (its
stock pipeline, guidance arguments, encoding rules, bench configs) is in its own file
(``backbones/<name>.py``, :class:`~apexgen.backbones.diffusers_backbone.DiffusersBackbone`).

Classes are imported on first use, so that listing the names costs no diffusers import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apexgen.backbones.diffusers_backbone import DiffusersBackbone

BACKBONES: dict[str, str] = {
    "sd3": "apexgen.backbones.sd3:SD3Backbone",
    "flux": "apexgen.backbones.flux:FluxBackbone",
    "qwen_image": "apexgen.backbones.qwen_image:QwenImageBackbone",
    "sana": "apexgen.backbones.sana:SanaBackbone",
    "z_image": "apexgen.backbones.z_image:ZImageBackbone",
}


def adapter_class(name: str) -> type[DiffusersBackbone]:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    module, _, cls = BACKBONES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def pipeline_class(name: str) -> type:
    return adapter_class(name).pipeline_class()


def backbone_name(adapter) -> str:
    """The registry name of an adapter instance (or class)."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    for name, path in BACKBONES.items():
        if path == f"{cls.__module__}:{cls.__name__}":
            return name
    raise ValueError(f"{cls.__name__} is not a registered backbone; known backbones: {', '.join(BACKBONES)}")
