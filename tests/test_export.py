"""Export → a fresh stock diffusers pipeline (tiny components, precomputed prompt embeddings) →
``num_inference_steps=1``, guidance off, ``output_type="latent"``: the same latents as our one-step
sampler, for all five backbones."""

import inspect
import json

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, QwenImagePipeline

from apexgen.backbones.lora import LoRAConfig, add_lora
from apexgen.backbones.registry import adapter_class, pipeline_class
from apexgen.condition import TextCondition
from apexgen.export import (
    LORA_WEIGHTS,
    SETTINGS_FILE,
    export_full,
    export_lora,
    read_settings,
    sampling_scheduler,
)
from apexgen.sampling import few_step_sample, one_step_sample
from tests.backbones.tiny import NAMES, latents, one_thread, text_condition, tiny_backbone, tiny_vae  # noqa: F401

TOLERANCE = 1e-4
SIDE = 32  # image side in pixels: the tiny VAEs have a spatial factor of 2 (16×16 latents)


def stock_pipeline(name: str, transformer, scheduler=None):
    """The pipeline class with a tiny VAE, no text encoders or tokenizers (prompt embeddings are given)."""
    cls = pipeline_class(name)
    parameters = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    components = dict.fromkeys(parameters)
    components.update(
        transformer=transformer, vae=tiny_vae(name), scheduler=scheduler or FlowMatchEulerDiscreteScheduler()
    )
    pipeline = cls(**components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def pipeline_inputs(name: str, noise: torch.Tensor, cond: TextCondition) -> dict:
    """Latents and prompt embeddings in the form the pipeline takes them (packed for Flux/Qwen-Image)."""
    batch, channels, height, width = noise.shape
    if name == "sd3":
        return dict(latents=noise, prompt_embeds=cond.tokens, pooled_prompt_embeds=cond.pooled)
    if name == "flux":
        packed = FluxPipeline._pack_latents(noise, batch, channels, height, width)
        return dict(latents=packed, prompt_embeds=cond.tokens, pooled_prompt_embeds=cond.pooled)
    if name == "qwen_image":
        packed = QwenImagePipeline._pack_latents(noise, batch, channels, height, width)
        return dict(latents=packed, prompt_embeds=cond.tokens, prompt_embeds_mask=cond.mask)
    if name == "sana":
        return dict(latents=noise, prompt_embeds=cond.tokens, prompt_attention_mask=cond.mask)
    captions = [tokens[mask] for tokens, mask in zip(cond.tokens, cond.mask, strict=True)]
    return dict(latents=noise, prompt_embeds=captions)


def pipeline_latents(name: str, output: torch.Tensor) -> torch.Tensor:
    """The pipeline's ``output_type="latent"`` result as (B, C, H, W): unpacked, no VAE scaling (all five
    return latents before their VAE scaling / shift, which they apply only when decoding)."""
    height = width = SIDE // 2
    if name == "flux":
        return FluxPipeline._unpack_latents(output, height, width, vae_scale_factor=1)
    if name == "qwen_image":
        return QwenImagePipeline._unpack_latents(output, height, width, vae_scale_factor=1).squeeze(2)
    return output


def run_pipeline(name: str, pipeline, settings: dict, noise, cond, steps: int = 1) -> torch.Tensor:
    arguments = {**settings["pipeline_arguments"], **settings["steps"][str(steps)]}
    with torch.no_grad():
        output = pipeline(
            **pipeline_inputs(name, noise, cond), **arguments, height=SIDE, width=SIDE, output_type="latent"
        ).images
    return pipeline_latents(name, output)


def student_and_base(name: str):
    """A LoRA student (random A and B, as after training; alpha ≠ rank, so the scale must travel with the
    file) and an untouched copy of its base transformer."""
    student = tiny_backbone(name, seed=1)
    base = tiny_backbone(name, seed=1).transformer
    add_lora(student, LoRAConfig(rank=4, alpha=8.0))
    with torch.no_grad():
        for parameter_name, parameter in student.named_parameters():
            if "lora_" in parameter_name:
                parameter.copy_(0.1 * torch.randn_like(parameter))
    return student, base


@pytest.mark.parametrize("name", NAMES)
def test_exported_lora_in_the_stock_pipeline_equals_our_one_step_sampler(tmp_path, name):
    student, base = student_and_base(name)
    result = export_lora(student, tmp_path)
    assert result.weights == tmp_path / LORA_WEIGHTS and result.weights.is_file()
    settings = read_settings(tmp_path)
    assert settings["weights"] == "lora" and settings["backbone"] == name

    generator = torch.Generator().manual_seed(2)
    noise, cond = latents(2, generator), text_condition(name, 2, generator)
    pipeline = stock_pipeline(name, base, sampling_scheduler(settings))
    before = run_pipeline(name, pipeline, settings, noise, cond)
    pipeline.load_lora_weights(tmp_path)
    after = run_pipeline(name, pipeline, settings, noise, cond)

    ours = one_step_sample(student, noise, cond)
    assert (after - ours).abs().max() < TOLERANCE
    assert (before - ours).abs().max() > 1e-3  # the LoRA is what makes them equal


@pytest.mark.parametrize("name", NAMES)
def test_exported_full_transformer_in_the_stock_pipeline_equals_our_one_step_sampler(tmp_path, name):
    student = tiny_backbone(name, seed=3)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    result = export_full(student, tmp_path)
    transformer = type(student.transformer).from_pretrained(result.weights)
    settings = json.loads((tmp_path / SETTINGS_FILE).read_text())
    generator = torch.Generator().manual_seed(4)
    noise, cond = latents(2, generator), text_condition(name, 2, generator)
    output = run_pipeline(name, stock_pipeline(name, transformer, sampling_scheduler(settings)), settings, noise, cond)
    assert (output - one_step_sample(student, noise, cond)).abs().max() < TOLERANCE
    reloaded = adapter_class(name).from_pretrained(str(tmp_path))
    assert torch.equal(one_step_sample(reloaded, noise, cond), one_step_sample(student, noise, cond))


def test_one_step_is_t_equal_one_for_every_stock_scheduler_but_terminal_stretch_needs_the_override():
    stock = {
        "sd3": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "flux": FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        "qwen_image": FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, max_shift=0.9, shift_terminal=0.02),
    }
    for name, scheduler in stock.items():
        scheduler.set_timesteps(1, sigmas=[1.0], mu=0.7)
        if name == "qwen_image":
            assert torch.isnan(scheduler.sigmas[0])  # the terminal stretch divides 0 by 0 with one step
        else:
            assert scheduler.sigmas.tolist() == [1.0, 0.0]
    settings = read_settings_of(tiny_backbone("qwen_image"))
    fixed = sampling_scheduler(settings, stock["qwen_image"].config)
    fixed.set_timesteps(1, sigmas=[1.0], mu=0.7)
    assert fixed.sigmas.tolist() == [1.0, 0.0]
    fixed.set_timesteps(2, sigmas=settings["steps"]["2"]["sigmas"], mu=0.7)
    assert fixed.sigmas.tolist() == pytest.approx([1.0, 0.6, 0.0])


# Flux and Qwen-Image draw the re-noising noise for packed latents: equal in distribution only.
@pytest.mark.parametrize("name", ["sd3", "sana", "z_image"])
def test_few_step_settings_make_the_stock_pipeline_our_renoising_sampler(tmp_path, name):
    student, base = student_and_base(name)
    export_lora(student, tmp_path)
    settings = read_settings(tmp_path)
    pipeline = stock_pipeline(name, base, sampling_scheduler(settings))
    pipeline.load_lora_weights(tmp_path)
    generator = torch.Generator().manual_seed(5)
    noise, cond = latents(2, generator), text_condition(name, 2, generator)
    # These pipelines hand no generator to scheduler.step here: they draw the re-noising noise globally.
    torch.manual_seed(6)
    ours = few_step_sample(student, noise, cond, steps=2, rng=None)
    torch.manual_seed(6)
    theirs = run_pipeline(name, pipeline, settings, noise, cond, steps=2)
    assert (theirs - ours).abs().max() < TOLERANCE


def test_export_refuses_the_wrong_kind_of_model(tmp_path):
    with pytest.raises(ValueError, match="no LoRA adapter"):
        export_lora(tiny_backbone("sd3"), tmp_path)
    student, _ = student_and_base("sd3")
    with pytest.raises(ValueError, match="export_lora"):
        export_full(student, tmp_path)


def read_settings_of(backbone) -> dict:
    from apexgen.export import sampling_settings

    return sampling_settings(backbone, "full")
