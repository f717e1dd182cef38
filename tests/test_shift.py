import pytest
import torch
from torch import nn

from apexgen.condition import VectorCondition
from apexgen.shift import ConditionShift
from tests.conftest import tiny_mlp, toy_batch


def inputs(dtype=torch.float64):
    batch = toy_batch(8, dtype=dtype)
    t = torch.linspace(0.1, 0.9, 8, dtype=dtype)
    return batch.x0, t, batch.cond


def test_no_shift_is_exactly_the_stock_model():
    model = tiny_mlp(dtype=torch.float64)
    x, t, cond = inputs()
    assert torch.equal(model(x, t, cond), model.velocity(x, t, cond))
    assert torch.equal(model(x, t, cond, shift=None), model.velocity(x, t, cond))


def test_projected_shift_equals_the_model_run_on_manually_shifted_projected_tokens():
    model = tiny_mlp(dtype=torch.float64)
    x, t, cond = inputs()
    shift = ConditionShift(a=-0.5, b=1.0, where="projected")
    hooked = model(x, t, cond, shift=shift)
    projection = model.cond_proj
    model.cond_proj = nn.Sequential(projection, Affine(-0.5, 1.0))
    manual = model.velocity(x, t, cond)
    model.cond_proj = projection
    torch.testing.assert_close(hooked, manual, rtol=0, atol=0)
    assert not torch.allclose(hooked, model(x, t, cond))


def test_embeds_shift_acts_on_the_condition_vector():
    model = tiny_mlp(dtype=torch.float64)
    x, t, cond = inputs()
    shift = ConditionShift(a=-1.0, b=0.0, where="embeds")
    torch.testing.assert_close(model(x, t, cond, shift=shift), model(x, t, VectorCondition(-cond.values)))


def test_hook_is_removed_after_use_even_on_error():
    model = tiny_mlp(dtype=torch.float64)
    x, t, cond = inputs()
    shift = ConditionShift()
    with pytest.raises(RuntimeError):
        with shift.hooked(model.cond_proj):
            raise RuntimeError("boom")
    model(x, t, cond, shift=shift)
    assert not model.cond_proj._forward_hooks
    assert torch.equal(model(x, t, cond), model.velocity(x, t, cond))


def test_shift_formula_and_validation():
    c = torch.tensor([1.0, -2.0])
    assert torch.equal(ConditionShift(a=-0.5, b=1.0)(c), torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="where"):
        ConditionShift(where="tokens")


class Affine(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a * x + self.b
