"""Settings read from the environment: bad values fail at start-up with ImproperlyConfigured."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from project.settings import env_number


def test_env_number_reads_ints_and_floats_and_defaults_when_unset(monkeypatch) -> None:
    monkeypatch.setenv("TEST_NUMBER", "12")
    assert env_number("TEST_NUMBER", 1) == 12
    monkeypatch.setenv("TEST_NUMBER", "0.002")
    assert env_number("TEST_NUMBER", 1.0, float) == 0.002
    monkeypatch.delenv("TEST_NUMBER")
    assert env_number("TEST_NUMBER", 7) == 7


@pytest.mark.parametrize(
    ("raw", "kwargs", "message"),
    [
        ("x", {}, "is not a int"),
        ("-1", {}, "must be at least 0"),
        ("0", {"minimum": 1}, "must be at least 1"),  # CHANNEL_LAYER_CAPACITY=0 would drop every push
        ("0", {"cast": float, "minimum": 0.0001, "maximum": 0.1}, "between 0.0001 and 0.1"),
        ("1e9", {"cast": float, "minimum": 0.0001, "maximum": 0.1}, "between 0.0001 and 0.1"),
    ],
)
def test_env_number_refuses_values_outside_its_bounds(monkeypatch, raw, kwargs, message) -> None:
    monkeypatch.setenv("TEST_NUMBER", raw)
    with pytest.raises(ImproperlyConfigured, match=message):
        env_number("TEST_NUMBER", 1, **kwargs)
