import pytest
import torch

from apexgen.backbones.mlp import MLPConfig, MLPVelocity
from apexgen.batch import Batch
from apexgen.condition import VectorCondition


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


def tiny_mlp(cond_dim: int = 3, dtype=torch.float32, seed: int = 0) -> MLPVelocity:
    torch.manual_seed(seed)
    return MLPVelocity(2, cond_dim, MLPConfig(hidden=16, layers=2, time_frequencies=2)).to(dtype)


def toy_batch(size: int = 16, cond_dim: int = 3, dtype=torch.float32, seed: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(size, 2, generator=generator, dtype=dtype)
    cond = torch.randn(size, cond_dim, generator=generator, dtype=dtype)
    return Batch(x0, VectorCondition(cond), VectorCondition(torch.zeros_like(cond)))


# Tiny models gain nothing from several threads, and on a busy 2-core machine OpenMP threads competing with
# other processes can make small matrix products orders of magnitude slower.
torch.set_num_threads(1)
