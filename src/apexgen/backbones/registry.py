"""Backbone names → adapter class, the stock diffusers pipeline, and the pipeline arguments that turn its
guidance off (the student is sampled without guidance: it was baked in).

Classes are imported on first use, so that listing the names costs no diffusers import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    adapter: str  # "module:Class"
    pipeline: str  # a diffusers pipeline class name
    guidance_off: dict[str, Any] = field(default_factory=dict)

    def adapter_class(self) -> type:
        module, _, cls = self.adapter.partition(":")
        return getattr(importlib.import_module(module), cls)

    def pipeline_class(self) -> type:
        return getattr(importlib.import_module("diffusers"), self.pipeline)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        # CFG runs when guidance_scale > 1.
        BackboneSpec("sd3", "apexgen.backbones.sd3:SD3Backbone", "StableDiffusion3Pipeline", {"guidance_scale": 1.0}),
        # True CFG runs when true_cfg_scale > 1 and a negative prompt is given; guidance_scale is the distilled
        # guidance input of FLUX.1-dev, set from the adapter's guidance_scale at export.
        BackboneSpec("flux", "apexgen.backbones.flux:FluxBackbone", "FluxPipeline", {"true_cfg_scale": 1.0}),
        BackboneSpec(
            "qwen_image",
            "apexgen.backbones.qwen_image:QwenImageBackbone",
            "QwenImagePipeline",
            {"true_cfg_scale": 1.0},
        ),
        BackboneSpec("sana", "apexgen.backbones.sana:SanaBackbone", "SanaPipeline", {"guidance_scale": 1.0}),
        # ZImagePipeline runs CFG when guidance_scale > 0.
        BackboneSpec("z_image", "apexgen.backbones.z_image:ZImageBackbone", "ZImagePipeline", {"guidance_scale": 0.0}),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def adapter_class(name: str) -> type:
    return backbone_spec(name).adapter_class()


def pipeline_class(name: str) -> type:
    return backbone_spec(name).pipeline_class()


def backbone_name(adapter) -> str:
    """The registry name of an adapter instance (or class)."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    for spec in BACKBONES.values():
        if spec.adapter == f"{cls.__module__}:{cls.__name__}":
            return spec.name
    raise ValueError(f"{cls.__name__} is not a registered backbone; known backbones: {', '.join(BACKBONES)}")
