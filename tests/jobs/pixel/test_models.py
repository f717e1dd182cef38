import torch

from apexgen.jobs.pixel.config import DistillConfig
from apexgen.jobs.pixel.models import make_student, shipped_teacher
from apexgen.train.loop import TrainConfig


def lora_weights(seed: int, method: str = "apex") -> dict[str, torch.Tensor]:
    torch.rand(seed + 5)  # a different global generator state before every build
    networks = make_student(shipped_teacher(), DistillConfig(method=method, train=TrainConfig(seed=seed)))
    return {n: p.detach().clone() for n, p in networks.student.named_parameters() if "lora_" in n}


def test_the_lora_initialisation_follows_the_training_seed_not_the_global_generator():
    first, again, other = lora_weights(0), lora_weights(0), lora_weights(1)
    assert first.keys() == again.keys() and any("lora_A" in n for n in first)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in first if "lora_A" in n)


def test_dmd2s_two_adapters_start_apart():
    weights = lora_weights(0, "dmd2")
    fake = {n.replace(".fake.", ".default."): w for n, w in weights.items() if ".fake." in n}
    assert fake and not any(torch.equal(w, weights[n]) for n, w in fake.items() if "lora_A" in n)
