"""Encoding with each backbone's stock pipeline: the embeddings and null condition give the pipeline the
same result as its own prompt handling, and latents follow the VAE normalisation its decoder inverts."""

from types import SimpleNamespace

import pytest
import torch
from diffusers import FluxImg2ImgPipeline, QwenImageImg2ImgPipeline

from apexgen.data.encoding import PipelineEncoder
from apexgen.data.stream import batch_conditions
from apexgen.seeding import RECORD_ENCODING
from tests.backbones.tiny import NAMES, text_condition, tiny_backbone
from tests.data.tiny_pipelines import MAX_SEQUENCE_LENGTH, SIDE, tiny_pipeline

TOLERANCE = 1e-5
PROMPT = "a red cat"
MASKED = ("qwen_image", "sana", "z_image")
GUIDANCE = {"sd3": "guidance_scale", "flux": "true_cfg_scale", "qwen_image": "true_cfg_scale"}


def encoder(name: str, **options) -> PipelineEncoder:
    return PipelineEncoder(tiny_pipeline(name), name, MAX_SEQUENCE_LENGTH[name], **options)


def embedding_inputs(name: str, cond, null) -> dict:
    """Our conditions in the form the stock pipeline takes precomputed embeddings."""
    if name == "z_image":
        return dict(prompt_embeds=[cond.tokens[0][cond.mask[0]]], negative_prompt_embeds=[null.tokens[0][null.mask[0]]])
    inputs = dict(prompt_embeds=cond.tokens, negative_prompt_embeds=null.tokens)
    if name in ("sd3", "flux"):
        return inputs | dict(pooled_prompt_embeds=cond.pooled, negative_pooled_prompt_embeds=null.pooled)
    if name == "qwen_image":
        return inputs | dict(prompt_embeds_mask=cond.mask.long(), negative_prompt_embeds_mask=null.mask.long())
    masks = dict(prompt_attention_mask=cond.mask.long(), negative_prompt_attention_mask=null.mask.long())
    return inputs | masks | dict(negative_prompt=None)  # SANA's default negative prompt "" would clash


def run(pipeline, name: str, **inputs) -> torch.Tensor:
    """Two guided steps (guidance against the negative prompt) from fixed noise; latents out."""
    if name == "sana":  # SANA would otherwise move 32×32 to its nearest 512-pixel aspect-ratio bin
        inputs["use_resolution_binning"] = False
    with torch.no_grad():
        return pipeline(
            **inputs,
            **{GUIDANCE.get(name, "guidance_scale"): 3.0},
            num_inference_steps=2,
            height=SIDE,
            width=SIDE,
            max_sequence_length=MAX_SEQUENCE_LENGTH[name],
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        ).images


@pytest.mark.parametrize("name", NAMES)
def test_our_prompt_and_null_embeddings_give_the_stock_pipeline_its_own_result(name):
    """The pipeline run on the strings (its own encode_prompt, defaults and negative prompt "") equals the run
    on our embeddings, whose masked rows were cut after their last valid token and padded to a common length."""
    encoding = encoder(name)
    cond, null = batch_conditions(encoding.encode_prompts([PROMPT]), encoding.null())
    own = run(encoding.pipeline, name, prompt=PROMPT, negative_prompt="")
    ours = run(encoding.pipeline, name, **embedding_inputs(name, cond, null))
    assert (own - ours).abs().max() < TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_prompt_embeddings_have_the_backbone_layout(name):
    texts = encoder(name).encode_prompts([PROMPT, "dog", ""])
    for text in texts:
        assert text.tokens.dim() == 2 and text.tokens.shape[1] == 32
        assert (text.pooled is not None) == (name in ("sd3", "flux"))
        assert (text.mask is not None) == (name in MASKED)
        if text.mask is not None:
            assert text.mask.dtype == torch.bool and text.mask[-1]  # trailing padding removed
    if name in ("sana", "z_image", "qwen_image"):
        assert texts[0].tokens.shape[0] > texts[1].tokens.shape[0] > texts[2].tokens.shape[0]


def generators(indices, seed=0):
    return [RECORD_ENCODING.generator(seed, index) for index in indices]


def images(count: int) -> torch.Tensor:
    return torch.rand(count, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5)) * 2 - 1


@pytest.mark.parametrize("name", ["sd3", "flux", "z_image"])
def test_kl_latents_are_the_shifted_and_scaled_posterior_draw(name):
    encoding = encoder(name)
    vae = encoding.pipeline.vae
    vae.register_to_config(shift_factor=0.1, scaling_factor=1.5)
    latents = encoding.encode_images(images(2), [3, 7])
    assert latents.shape == (2, *encoding.latent_shape(SIDE))
    with torch.no_grad():  # the img2img pipelines' own encoding (Flux's; SD3's and Z-Image's are the same code)
        stock = FluxImg2ImgPipeline._encode_vae_image(SimpleNamespace(vae=vae), images(2), generators([3, 7]))
    assert (latents - stock).abs().max() < TOLERANCE


def test_qwen_image_latents_are_normalised_per_channel_through_the_frame_axis():
    encoding = encoder("qwen_image")
    vae = encoding.pipeline.vae
    vae.register_to_config(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[2.0, 0.5, 1.0, 3.0])
    latents = encoding.encode_images(images(2), [0, 1])
    assert latents.shape == (2, *encoding.latent_shape(SIDE))
    with torch.no_grad():
        pipeline = SimpleNamespace(vae=vae)
        stock = QwenImageImg2ImgPipeline._encode_vae_image(pipeline, images(2).unsqueeze(2), generators([0, 1]))
    assert (latents - stock.squeeze(2)).abs().max() < TOLERANCE


def test_sana_latents_are_the_scaled_deterministic_code():
    encoding = encoder("sana")
    vae = encoding.pipeline.vae
    vae.register_to_config(scaling_factor=0.5)
    latents = encoding.encode_images(images(2), [0, 1])
    assert latents.shape == (2, *encoding.latent_shape(SIDE))
    with torch.no_grad():
        assert (latents - 0.5 * vae.encode(images(2)).latent).abs().max() < TOLERANCE


def test_a_record_gets_the_same_draw_alone_or_in_any_batch_and_mode_is_the_mean():
    encoding = encoder("sd3", seed=4)
    batch = images(3)
    together = encoding.encode_images(batch, [10, 11, 12])
    alone = encoding.encode_images(batch[1:2], [11])
    assert (together[1] - alone[0]).abs().max() < TOLERANCE  # the VAE itself is batch-invariant up to rounding
    assert (encoding.encode_images(batch[1:2], [12]) - alone).abs().max() > 0.01  # the index seeds the draw
    mode = encoder("sd3", latent_sample="mode")
    first, second = mode.encode_images(batch, [0, 1, 2]), mode.encode_images(batch, [5, 6, 7])
    assert torch.equal(first, second)


def test_resolution_must_fit_the_vae():
    with pytest.raises(ValueError, match="not a multiple of the VAE's spatial factor 2"):
        encoder("sd3").latent_shape(33)
    with pytest.raises(ValueError, match="unknown backbone 'sdxl'; known backbones: sd3"):
        PipelineEncoder(tiny_pipeline("sd3"), "sdxl")


@pytest.mark.parametrize("name", MASKED)
def test_extra_masked_padding_leaves_the_velocity_unchanged(name):
    """Why embeddings can be stored without padding: the batch pads them again, and masked backbones ignore it."""
    backbone = tiny_backbone(name)
    generator = torch.Generator().manual_seed(1)
    cond = text_condition(name, 2, generator)
    padded = cond.with_shift_field(torch.cat([cond.tokens, torch.randn(2, 3, 32, generator=generator)], 1))
    padded.mask = torch.cat([cond.mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    x, t = torch.randn(2, 4, 16, 16, generator=generator), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        assert (backbone(x, t, cond) - backbone(x, t, padded)).abs().max() < TOLERANCE
