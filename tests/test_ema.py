import pytest
import torch

from apexgen.ema import ema_update, warmed_up_decay


def test_warm_up_forgets_the_initial_weights_quickly_then_caps_at_the_decay():
    assert warmed_up_decay(0.999, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.999, 90) == pytest.approx(91 / 100)
    assert warmed_up_decay(0.999, 100_000) == 0.999


def test_module_ema_update():
    target, source = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    old = target.weight.detach().clone()
    ema_update(target, source, 0.75)
    torch.testing.assert_close(target.weight, 0.75 * old + 0.25 * source.weight)
