"""``KEY=VALUE`` overrides: the syntax, and keys given both a value and settings inside it."""

import pytest

from apexgen.config import ConfigError
from apexgen.overrides import parse_overrides


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["student.steps"])


@pytest.mark.parametrize(
    "overrides",
    [
        ["student=3", "student.steps=4"],
        ["student.steps=4", "student=3"],
        ["methods={apex: 1}", "methods.apex.loss=mse"],
    ],
)
def test_an_override_that_is_both_a_value_and_a_section_is_refused_naming_both(overrides):
    with pytest.raises(ConfigError) as error:
        parse_overrides(overrides)
    assert error.value.key in ("student", "methods.apex")
    assert f"the overrides {overrides[0]} and {overrides[1]} conflict" in str(error.value)
    assert "keep one of the two" in str(error.value)


def test_overrides_of_one_section_merge_in_either_order():
    assert parse_overrides(["student.steps=4", "student={batch_size: 8}"]) == {"student": {"steps": 4, "batch_size": 8}}
    assert parse_overrides(["student.steps=4", "student.steps=5"]) == {"student": {"steps": 5}}  # the last wins
