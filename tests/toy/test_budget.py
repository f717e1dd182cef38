"""Every toy student gets the same number of optimiser updates, whatever its schedule."""

from apexgen.objectives.apex import APEX, APEXConfig
from apexgen.objectives.dmd2 import DMD2, DMD2Config
from apexgen.toy.benchmark import steps_for_budget
from tests.conftest import tiny_mlp


def test_steps_for_budget_counts_every_update_of_a_schedule():
    model = tiny_mlp()
    assert steps_for_budget(APEX(APEXConfig(), model, model), 10) == 10
    # 3 fake-only warm-up updates, then 2 per step: 10 updates are 3 + 3 × 2, one left unused.
    assert steps_for_budget(APEX(APEXConfig(fake_warmup=3, fake_updates=1), model, model), 10) == 6
    dmd2 = DMD2(DMD2Config(critic_updates=5), model, model, tiny_mlp(seed=1))
    assert steps_for_budget(dmd2, 6000) == 1000
