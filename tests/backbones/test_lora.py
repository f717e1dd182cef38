import re

import pytest
import torch

from apexgen.backbones.lora import (
    FrozenBase,
    LoRAConfig,
    LoRARankError,
    adapters_disabled,
    add_lora,
    has_lora,
    target_layers,
    target_pattern,
)
from tests.backbones.tiny import NAMES, latents, text_condition, tiny_backbone

QWEN_RECIPE = {
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "img_mlp.net.0.proj",
    "img_mlp.net.2",
    "txt_mlp.net.0.proj",
    "txt_mlp.net.2",
}


def lora_student(name: str, rank: int = 4):
    student = tiny_backbone(name)
    add_lora(student, LoRAConfig(rank=rank, alpha=rank))
    with torch.no_grad():  # a trained-looking adapter (peft starts with B = 0)
        for parameter_name, parameter in student.named_parameters():
            if "lora_B" in parameter_name:
                parameter.copy_(0.1 * torch.randn_like(parameter))
    return student


def test_qwen_image_preset_is_the_released_recipe():
    backbone = tiny_backbone("qwen_image")
    layers = set(target_layers(backbone.transformer, target_pattern(backbone.lora_targets)))
    in_blocks = {re.sub(r"^transformer_blocks\.\d+\.", "", name) for name in layers if name.startswith("transformer_")}
    assert in_blocks == QWEN_RECIPE
    assert layers - {n for n in layers if n.startswith("transformer_")} == {
        "time_text_embed.timestep_embedder.linear_1",
        "time_text_embed.timestep_embedder.linear_2",
    }
    assert len(layers) == 2 * len(QWEN_RECIPE) + 2


@pytest.mark.parametrize("name", NAMES)
def test_lora_trains_only_adapter_weights_and_keeps_the_base_reachable(name):
    plain = tiny_backbone(name)
    student = lora_student(name)
    assert has_lora(student) and not has_lora(plain)
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    generator = torch.Generator().manual_seed(0)
    x, cond, t = latents(2, generator), text_condition(name, 2, generator), torch.tensor([1.0, 0.4])
    with torch.no_grad():
        base = plain(x, t, cond)
        assert (student(x, t, cond) - base).abs().max() > 1e-4
        with adapters_disabled(student):
            assert torch.equal(student(x, t, cond), base)
        assert torch.equal(FrozenBase(student)(x, t, cond), base)


def test_adapters_disabled_restores_every_requires_grad_flag():
    student = lora_student("sd3")
    lora = [p for n, p in student.named_parameters() if "lora_A" in n]
    lora[0].requires_grad_(False)  # e.g. frozen by the trainer while another group updates
    flags = [p.requires_grad for p in student.parameters()]
    with adapters_disabled(student):
        assert not any(p.requires_grad for p in student.parameters())  # peft's own switch
    assert [p.requires_grad for p in student.parameters()] == flags


def test_frozen_base_owns_no_parameters_and_cannot_freeze_the_student():
    student = lora_student("sd3")
    teacher = FrozenBase(student).requires_grad_(False).eval()
    assert list(teacher.parameters()) == []
    assert any(p.requires_grad for p in student.parameters())
    with pytest.raises(ValueError, match="frozen copy"):
        FrozenBase(tiny_backbone("sd3"))


@pytest.mark.parametrize("name", NAMES)
def test_rank_larger_than_a_layer_fails_before_any_adapter_is_added(name):
    backbone = tiny_backbone(name)
    with pytest.raises(
        LoRARankError, match=r"LoRA rank 33 is larger than layer '.+' \(\w+, weight \d+×\d+\).*at most 32"
    ):
        add_lora(backbone, LoRAConfig(rank=33, alpha=33))
    assert not has_lora(backbone)
    assert all(p.requires_grad for p in backbone.parameters())


def test_rank_error_names_the_layer_and_its_size():
    backbone = tiny_backbone("sd3")
    with pytest.raises(
        LoRARankError, match=r"'time_text_embed\.timestep_embedder\.linear_1' \(Linear, weight 32×256\)"
    ):
        add_lora(backbone, LoRAConfig(rank=33, alpha=33))
    with pytest.raises(LoRARankError, match=r"'transformer_blocks\.0\.attn\.to_q' \(Linear, weight 32×32\)"):
        add_lora(backbone, LoRAConfig(rank=40, alpha=40, targets=(r"transformer_blocks\.\d+\.attn\.to_q",)))


def test_targets_that_match_nothing_and_bad_settings_are_rejected():
    backbone = tiny_backbone("sd3")
    with pytest.raises(ValueError, match="no module of SD3Transformer2DModel matches"):
        add_lora(backbone, LoRAConfig(rank=4, targets=("to_qkv",)))
    with pytest.raises(ValueError, match="rank"):
        add_lora(backbone, LoRAConfig(rank=0))
