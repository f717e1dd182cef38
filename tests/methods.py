"""The default methods with the regression anchor of APEX's ``ours`` preset drawing a pool of 4 teacher
endpoints of 2 Euler steps (the default draws 2,048 of 25 steps), so that a test run takes seconds."""

from apexgen.config import build
from apexgen.objectives import MethodsConfig
from apexgen.objectives.apex import APEXConfig

SMALL_POOL = {"regression_pairs": 4, "regression_steps": 2}


def default_methods() -> MethodsConfig:
    return MethodsConfig(apex=build(APEXConfig, {"preset": "ours", **SMALL_POOL}))
