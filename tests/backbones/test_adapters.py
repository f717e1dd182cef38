import pytest
import torch
from torch import nn

from apexgen.backbones.registry import BACKBONES, adapter_class, backbone_name, pipeline_class
from apexgen.condition import TextCondition
from apexgen.shift import ConditionShift
from tests.backbones.tiny import NAMES, latents, stock_velocity, text_condition, tiny_backbone

# Times whose pipeline arithmetic (T = 1000·t, T / 1000, (1000 − T) / 1000) is exact in float32.
TIMES = torch.tensor([1.0, 0.75, 0.5, 0.25])
SHIFT = ConditionShift(a=-0.5, b=1.0, where="projected")


class Affine(nn.Module):
    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a * x + self.b


def inputs(name: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return latents(4, generator), TIMES.clone(), text_condition(name, 4, generator)


@pytest.mark.parametrize("name", NAMES)
def test_no_shift_is_bit_identical_to_the_stock_transformer_called_as_the_pipeline_does(name):
    backbone = tiny_backbone(name)
    x, t, cond = inputs(name)
    with torch.no_grad():
        ours = backbone(x, t, cond)
        stock = stock_velocity(name, backbone.transformer, x, t, cond)
    assert ours.shape == x.shape
    assert torch.equal(ours, stock)


@pytest.mark.parametrize("name", NAMES)
def test_projected_shift_equals_the_backbone_run_on_manually_shifted_projected_tokens(name):
    backbone = tiny_backbone(name)
    x, t, cond = inputs(name)
    parent_name, _, child = backbone.text_projection.rpartition(".")
    parent = backbone.get_submodule(parent_name)
    projection = getattr(parent, child)
    with torch.no_grad():
        plain = backbone(x, t, cond)
        hooked = backbone(x, t, cond, shift=SHIFT)
        setattr(parent, child, nn.Sequential(projection, Affine(SHIFT.a, SHIFT.b)))
        try:
            manual = backbone.velocity(x, t, cond)
        finally:
            setattr(parent, child, projection)
        after = backbone(x, t, cond)
    assert torch.equal(hooked, manual)
    assert (hooked - plain).abs().max() > 1e-3
    assert not projection._forward_hooks
    assert torch.equal(after, plain)


def replaced(backbone, path: str, module: nn.Module) -> nn.Module:
    """Put ``module`` at ``path`` of ``backbone``; returns what was there."""
    parent_name, _, child = path.rpartition(".")
    parent = backbone.get_submodule(parent_name)
    original = getattr(parent, child)
    setattr(parent, child, module)
    return original


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_pooled_shift_also_acts_on_the_projected_pooled_vector(name):
    """METHOD §2: S on every text input; SD3 and FLUX feed a pooled vector to AdaLN next to the tokens."""
    backbone = tiny_backbone(name)
    x, t, cond = inputs(name)
    shift = ConditionShift(a=-0.5, b=1.0, pooled=True)
    with torch.no_grad():
        tokens_only = backbone(x, t, cond, shift=SHIFT)
        hooked = backbone(x, t, cond, shift=shift)
        originals = {
            path: replaced(backbone, path, nn.Sequential(backbone.get_submodule(path), Affine(shift.a, shift.b)))
            for path in (backbone.text_projection, backbone.pooled_projection)
        }
        manual = backbone.velocity(x, t, cond)
        for path, module in originals.items():
            replaced(backbone, path, module)
    assert torch.equal(hooked, manual)
    assert (hooked - tokens_only).abs().max() > 1e-3
    embeds = ConditionShift(a=-1, b=0, where="embeds", pooled=True)
    negated = TextCondition(-cond.tokens, -cond.pooled, cond.mask)
    with torch.no_grad():
        assert torch.equal(backbone(x, t, cond, shift=embeds), backbone(x, t, negated))


@pytest.mark.parametrize("name", NAMES)
def test_embeds_shift_acts_on_the_prompt_tokens(name):
    backbone = tiny_backbone(name)
    x, t, cond = inputs(name)
    shifted = TextCondition(-cond.tokens, cond.pooled, cond.mask)
    with torch.no_grad():
        assert torch.equal(
            backbone(x, t, cond, shift=ConditionShift(a=-1, b=0, where="embeds")), backbone(x, t, shifted)
        )


@pytest.mark.parametrize("name", NAMES)
def test_features_pool_the_late_blocks_image_tokens(name):
    backbone = tiny_backbone(name)
    x, t, cond = inputs(name)
    captured = []
    late = backbone.get_submodule(backbone.feature_module)
    handle = late.register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        velocity, features = backbone.velocity_and_features(x, t, cond)
    handle.remove()
    assert velocity.shape == x.shape
    assert features.shape == (4, backbone.feature_dim)
    image_tokens = (16 // 2) * (16 // 2) if name != "sana" else 16 * 16  # tiny Sana: patch size 1
    output = captured[0]
    tokens = output if backbone.feature_output_index is None else output[backbone.feature_output_index]
    assert torch.equal(features, tokens[:, :image_tokens].mean(1))


def test_bad_latents_conditions_and_transformers_are_rejected():
    backbone = tiny_backbone("sd3")
    generator = torch.Generator().manual_seed(0)
    cond = text_condition("sd3", 2, generator)
    with pytest.raises(ValueError, match=r"latents \(B, 4, H, W\)"):
        backbone(torch.randn(2, 3, 16, 16), torch.ones(2), cond)
    with pytest.raises(ValueError, match="multiples of 2"):
        backbone(torch.randn(2, 4, 15, 16), torch.ones(2), cond)
    with pytest.raises(ValueError, match="pooled"):
        backbone(torch.randn(2, 4, 16, 16), torch.ones(2), TextCondition(cond.tokens))
    z_image = tiny_backbone("z_image")
    no_tokens = TextCondition(cond.tokens, None, torch.zeros(2, cond.tokens.shape[1], dtype=torch.bool))
    with pytest.raises(ValueError, match=r"rows \[0, 1\] have none"):
        z_image(torch.randn(2, 4, 16, 16), torch.ones(2), no_tokens)
    with pytest.raises(TypeError, match="FluxBackbone wraps a FluxTransformer2DModel, got SD3Transformer2DModel"):
        adapter_class("flux")(backbone.transformer)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="unknown backbone 'sdxl'; known backbones: sd3, flux, qwen_image, sana, z_image"
    ):
        adapter_class("sdxl")
    with pytest.raises(ValueError, match="known backbones"):
        pipeline_class("sdxl")


def test_registry_resolves_every_adapter_and_pipeline():
    for name in BACKBONES:
        assert backbone_name(adapter_class(name)) == name
        assert pipeline_class(name).__name__ == adapter_class(name).stock_pipeline.name


LAYER_NORMED_TEXT = ("sd3", "flux", "qwen_image")  # blocks that LayerNorm the projected text before any use


@pytest.mark.parametrize("name", NAMES)
def test_the_projected_shift_offset_b_is_invisible_where_blocks_layer_norm_the_text(name):
    """S(c) = a·c + b on projected tokens: LayerNorm removes b·1 (the mean over features) and the scale of
    a·c, so on these backbones only the sign of a is seen (benchmarks/apex_study.md, Table 7); SANA's RMSNorm
    and Z-Image's refiner see both."""
    backbone = tiny_backbone(name)
    x, t, cond = inputs(name)
    with torch.no_grad():
        offset = backbone(x, t, cond, shift=ConditionShift(a=-0.5, b=1.0)) - backbone(
            x, t, cond, shift=ConditionShift(a=-0.5, b=0.0)
        )
        scaled = backbone(x, t, cond, shift=ConditionShift(a=0.5, b=0.0)) - backbone(x, t, cond)
    if name in LAYER_NORMED_TEXT:
        assert offset.abs().max() < 1e-5 and scaled.abs().max() < 5e-3
    else:
        assert offset.abs().max() > 1e-2 and scaled.abs().max() > 1e-2
