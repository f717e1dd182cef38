"""Backbone names → adapter class, the stock diffusers pipeline, the pipeline arguments that turn its
guidance off (the student is sampled without guidance: it was baked in), and those that turn its
classifier-free guidance on for a teacher run (with a negative prompt), with how the pipeline evaluates the
two branches: one transformer call on the conditional and unconditional rows batched together, or two calls.

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
    guidance_on: dict[str, Any] = field(default_factory=dict)  # the pipeline's own CFG scale where it has one
    cfg_batched: bool = True  # True: one call of 2× batch per step; False: two calls (conditional, unconditional)

    def adapter_class(self) -> type:
        module, _, cls = self.adapter.partition(":")
        return getattr(importlib.import_module(module), cls)

    def pipeline_class(self) -> type:
        return getattr(importlib.import_module("diffusers"), self.pipeline)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        # CFG runs when guidance_scale > 1 (default 7.0), both branches in one call of 2× batch.
        BackboneSpec(
            "sd3",
            "apexgen.backbones.sd3:SD3Backbone",
            "StableDiffusion3Pipeline",
            {"guidance_scale": 1.0},
            {"guidance_scale": 7.0},
        ),
        # True CFG runs when true_cfg_scale > 1 and a negative prompt is given, as a second transformer call;
        # guidance_scale is the distilled guidance input of FLUX.1-dev (not CFG), set from the adapter's
        # guidance_scale at export. The pipeline's true_cfg_scale default (1.0) is off: 4.0 is Qwen-Image's.
        BackboneSpec(
            "flux",
            "apexgen.backbones.flux:FluxBackbone",
            "FluxPipeline",
            {"true_cfg_scale": 1.0},
            {"true_cfg_scale": 4.0},
            cfg_batched=False,
        ),
        BackboneSpec(
            "qwen_image",
            "apexgen.backbones.qwen_image:QwenImageBackbone",
            "QwenImagePipeline",
            {"true_cfg_scale": 1.0},
            {"true_cfg_scale": 4.0},
            cfg_batched=False,
        ),
        # CFG runs when guidance_scale > 1 (default 4.5), both branches in one call of 2× batch.
        BackboneSpec(
            "sana",
            "apexgen.backbones.sana:SanaBackbone",
            "SanaPipeline",
            {"guidance_scale": 1.0},
            {"guidance_scale": 4.5},
        ),
        # ZImagePipeline runs CFG when guidance_scale > 0 (default 5.0), both branches in one call.
        BackboneSpec(
            "z_image",
            "apexgen.backbones.z_image:ZImageBackbone",
            "ZImagePipeline",
            {"guidance_scale": 0.0},
            {"guidance_scale": 5.0},
        ),
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
