import torch

from apexgen.train.ema import ParameterEMA


def test_parameter_ema_tracks_only_trainable_weights():
    module = torch.nn.Linear(2, 2)
    module.bias.requires_grad_(False)
    ema = ParameterEMA(module, decay=0.999)
    assert set(ema.shadow) == {"weight"}
    with torch.no_grad():
        module.weight.fill_(1.0)
    before = ema.shadow["weight"].clone()
    ema.update()
    torch.testing.assert_close(ema.shadow["weight"], 0.1 * before + 0.9)
