"""Every student gets the same number of optimiser updates, whatever its schedule."""

from apexgen.objectives.apex import APEXConfig
from apexgen.objectives.base import steps_for_budget
from apexgen.objectives.dmd2 import DMD2Config


def test_steps_for_budget_counts_every_update_of_a_schedule():
    assert steps_for_budget(APEXConfig().schedule, 10) == 10
    # 3 fake-only warm-up updates, then 2 per step: 10 updates are 3 + 3 × 2, one left unused.
    assert steps_for_budget(APEXConfig(fake_warmup=3, fake_updates=1).schedule, 10) == 6
    assert steps_for_budget(DMD2Config(critic_updates=5).schedule, 6000) == 1000


def test_steps_for_budget_can_count_generator_updates_only():
    assert steps_for_budget(DMD2Config(critic_updates=5).schedule, 100, "generator") == 100
    # the warm-up moves no generator: 3 warm-up steps, then one generator update per step
    assert steps_for_budget(APEXConfig(fake_warmup=3, fake_updates=1).schedule, 10, "generator") == 13
