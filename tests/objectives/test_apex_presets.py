"""APEX's presets resolve to the documented values, keys next to a preset override it, the job keeps its
own guidance, and bad values are refused before any work with the key and what is allowed."""

import pytest

from apexgen.cli import main
from apexgen.config import ConfigError, build, load
from apexgen.jobs.pixel.config import APEX_GUIDANCE, T2IConfig
from apexgen.jobs.toy.config import ToyConfig
from apexgen.objectives import MethodsConfig, endpoint_pool_size
from apexgen.objectives.apex import APEXConfig
from apexgen.objectives.twinflow import TwinFlowConfig
from apexgen.overrides import parse_overrides


def test_paper_preset_is_method_section_3():
    config = APEXConfig.from_preset("paper")
    assert (config.generator_form, config.mix_weighting, config.real_velocity) == ("paper", "paper", "live")
    assert (config.slices.generator, config.slices.anchor, config.slices.fake) == (0.0, 1.0, 0.0)
    assert (config.weight_fake, config.weight_anchor) == (1.0, 1.0)  # λ_p = λ_e = 1 (Eq. 25)
    assert (config.condition_shift.a, config.condition_shift.b) == (-0.5, 1.0)  # Table 7's best
    assert (config.paper.fake_noise, config.paper.fake_time, config.paper.fake_gradient) == ("same", "same", True)
    assert config.fake_network == "shared" and config.fake_updates == 0 and config.fake_warmup == 0
    assert not config.needs_reference()  # no frozen teacher


def test_released_preset_is_method_section_4():
    config = APEXConfig.from_preset("released")
    assert (config.fake_key, config.loss, config.real_velocity, config.enhanced_ratio) == (
        "both",
        "barron",
        "live",
        0.8,
    )
    assert (config.condition_shift.a, config.condition_shift.b, config.clamp) == (-1.0, 0.0, 1.0)
    assert config.slices.as_dict() == {"generator": 0.25, "anchor": 0.5, "fake": 0.25}
    assert TwinFlowConfig.from_preset("released").fake_key == "negative_time"


def test_ours_is_the_default_of_every_job():
    assert MethodsConfig().apex.preset == "ours"
    assert T2IConfig().methods.apex.preset == "ours"
    assert T2IConfig().methods.apex == APEXConfig.from_preset("ours", real_guidance=APEX_GUIDANCE)


def test_ours_is_the_shared_branch_with_a_regression_anchor_whose_pool_is_reported():
    ours = APEXConfig.from_preset("ours")
    assert (ours.fake_network, ours.weight_generator, ours.fake_warmup, ours.weight_regression) == ("shared", 4, 50, 4)
    pool = endpoint_pool_size("apex", T2IConfig().methods)
    assert (pool.pairs, pool.steps, pool.guidance, pool.teacher_forwards) == (2048, 25, APEX_GUIDANCE, 2048 * 25 * 2)
    assert "102,400 per-sample teacher forwards" in pool.describe()
    assert "apex.weight_regression=0: no pool" in pool.describe()
    without = MethodsConfig(apex=build(APEXConfig, {"preset": "ours", "weight_regression": 0}))
    assert endpoint_pool_size("apex", without) is None and endpoint_pool_size("dmd2", MethodsConfig()) is None


def test_keys_next_to_a_preset_override_it_and_the_job_keeps_its_guidance():
    config = load(T2IConfig, parse_overrides(["methods.apex.preset=paper", "methods.apex.mix_lambda=0.3"]))
    apex = config.methods.apex
    assert apex.generator_form == "paper" and apex.mix_lambda == 0.3
    assert apex.real_guidance == APEX_GUIDANCE  # a job field: the CFG of APEX's teacher target stays the job's
    assert apex.fake_warmup == 0  # the job's own APEX values do not leak into another preset
    # the order of the keys does not matter: the preset is applied first
    again = load(T2IConfig, parse_overrides(["methods.apex.mix_lambda=0.3", "methods.apex.preset=paper"]))
    assert again.methods.apex == apex


@pytest.mark.parametrize("job", [ToyConfig, T2IConfig])
def test_the_anchor_draws_the_regression_rows_pool_in_every_job_even_under_a_named_preset(job):
    for methods in (job().methods, load(job, parse_overrides(["methods.apex.preset=ours"])).methods):
        apex, regression = methods.apex, methods.regression
        assert apex.preset == "ours" and apex.weight_regression > 0
        assert (apex.regression_pairs, apex.regression_steps) == (regression.pairs, regression.teacher_steps)
    assert (ToyConfig().methods.apex.regression_pairs, ToyConfig().methods.apex.regression_steps) == (65536, 50)
    assert (T2IConfig().methods.apex.regression_pairs, T2IConfig().methods.apex.regression_steps) == (2048, 25)


def test_dry_run_prints_the_resolved_preset(capsys):
    assert main(["distill", "--dry-run", "methods.apex.preset=paper"]) == 0
    printed = capsys.readouterr().out
    assert "preset: paper" in printed and "generator_form: paper" in printed and "mix_weighting: paper" in printed


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        ({"preset": "papers"}, "preset", "allowed presets: 'paper', 'released', 'ours'"),
        ({"preset": "paper", "mix_lambda": 1.5}, "mix_lambda", "must be in [0, 1]"),
        ({"preset": "paper", "mix_weight_cap": 0}, "mix_weight_cap", "must be > 0"),
        ({"preset": "paper", "slices": {"anchor": 0.0, "generator": 0.5, "fake": 0.5}}, "slices.generator",
         "has no generator rows"),
        ({"fake_network": "private"}, "fake_updates", "set fake_updates ≥ 1"),
        ({"fake_network": "private", "fake_updates": 1}, "slices.fake", "set slices.fake=0"),
        ({"fake_key": "none"}, "fake_key", "fake_network='private'"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key_and_what_is_allowed(overrides, key, words):
    with pytest.raises(ConfigError) as error:
        build(APEXConfig, overrides, "methods.apex")
    assert error.value.key == f"methods.apex.{key}" and words in error.value.message


def test_twinflow_has_only_the_released_preset():
    with pytest.raises(ConfigError, match="allowed presets: 'released'"):
        load(T2IConfig, parse_overrides(["methods.twinflow.preset=paper"]))
