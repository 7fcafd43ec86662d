"""The app's settings (sessions_app.conf): defaults, the README's table, the environment, reloads."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import project.settings as project_settings
from sessions_app import conf
from sessions_app.conf import DEFAULTS, app_settings

ROOT = Path(__file__).resolve().parents[1]
# A row of the README's "Settings" table: | `NAME` | default | meaning |
ROW = re.compile(r"^\| `(?P<name>[A-Z_]+)` \| (?P<default>.+?) \| .+ \|$")


def readme_settings() -> dict[str, str]:
    """Variable name to the default cell of each row of the README's "Settings" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return {match["name"]: match["default"] for line in section.splitlines() if (match := ROW.match(line))}


def run_python(code: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with the project's settings and ``variables`` set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "SESSIONS_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", **variables})
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


# --- defaults and the README ----------------------------------------------------------------------


def test_the_readme_lists_every_app_setting_with_the_default_the_app_declares() -> None:
    rows = {name: cell for name, cell in readme_settings().items() if name.startswith(conf.PREFIX)}
    assert sorted(rows) == sorted(conf.PREFIX + name for name in DEFAULTS)
    for name, default in DEFAULTS.items():
        cell = rows[conf.PREFIX + name]
        if isinstance(default, tuple) and not default:
            assert cell.startswith("unset"), name
        elif isinstance(default, tuple):
            assert cell == f"`{','.join(default)}`", name
        else:
            assert cell.startswith("`") and cell.endswith("`"), name
            assert float(cell.strip("`")) == default, name


def test_every_setting_is_annotated_and_every_number_has_bounds() -> None:
    assert set(conf.AppSettings.__annotations__) == set(DEFAULTS)
    assert set(conf.BOUNDS) == {name for name, value in DEFAULTS.items() if not isinstance(value, tuple)}
    for name, (low, high) in conf.BOUNDS.items():
        assert low <= DEFAULTS[name] <= (math.inf if high is None else high), name


def test_the_project_sets_every_app_setting_from_the_environment_or_the_default() -> None:
    for name, default in DEFAULTS.items():
        full = conf.PREFIX + name
        assert hasattr(project_settings, full), full
        if full not in os.environ:
            expected = list(default) if isinstance(default, tuple) else default
            assert getattr(project_settings, full) == expected, full


def test_values_are_plain_instance_attributes() -> None:
    app_settings.RATE_LIMIT  # noqa: B018 - loads them if nothing has yet
    assert set(DEFAULTS) <= set(vars(app_settings))


def test_the_app_uses_its_defaults_in_a_project_that_sets_none_of_them() -> None:
    code = (
        "from django.conf import settings; settings.configure()\n"
        "from sessions_app.conf import app_settings, DEFAULTS\n"
        "assert {name: getattr(app_settings, name) for name in DEFAULTS} == DEFAULTS\n"
        "print('ok')"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- the environment ------------------------------------------------------------------------------


def test_the_readme_lists_every_variable_the_project_settings_read() -> None:
    assert sorted(readme_settings()) == sorted(project_settings.env.dump())


def test_an_environment_variable_overrides_the_default() -> None:
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from sessions_app.conf import app_settings\n"
        "print(settings.SESSIONS_RATE_LIMIT, app_settings.RATE_LIMIT,"
        " settings.SESSIONS_MAX_SEND_BUFFER, app_settings.MAX_SEND_BUFFER, app_settings.ALLOWED_ORIGINS)"
    )
    result = run_python(
        code, SESSIONS_RATE_LIMIT="12.5", SESSIONS_MAX_SEND_BUFFER="4096", SESSIONS_ALLOWED_ORIGINS="a.test, .b.test,"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=4) == ["12.5", "12.5", "4096", "4096", "('a.test', '.b.test')\n"]


def test_a_bad_value_stops_start_up_naming_the_variable() -> None:
    result = run_python("import django; django.setup()", SESSIONS_GIL_SWITCH_INTERVAL="1", SESSIONS_RATE_BURST="x")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured:"), result.stderr
    assert "SESSIONS_GIL_SWITCH_INTERVAL='1'" in last and "SESSIONS_RATE_BURST='x'" in last


# --- reloads --------------------------------------------------------------------------------------


def test_override_settings_reloads_the_app_settings() -> None:
    before = app_settings.RATE_LIMIT, app_settings.MAX_SEND_BUFFER
    with override_settings(SESSIONS_RATE_LIMIT=5, SESSIONS_MAX_SEND_BUFFER=10):
        assert app_settings.RATE_LIMIT == 5.0 and isinstance(app_settings.RATE_LIMIT, float)
        assert app_settings.MAX_SEND_BUFFER == 10
    assert (app_settings.RATE_LIMIT, app_settings.MAX_SEND_BUFFER) == before


def test_the_settings_fixture_reloads_the_app_settings(settings: Any) -> None:
    settings.SESSIONS_ALLOWED_ORIGINS = ["https://app.example.com"]
    assert app_settings.ALLOWED_ORIGINS == ("https://app.example.com",)


def test_other_settings_do_not_reload_the_app_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []
    monkeypatch.setattr(conf.AppSettings, "reload", lambda self: calls.append(None))
    with override_settings(SESSION_COOKIE_AGE=60):
        pass
    assert calls == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SESSIONS_PUSH_BUFFER", 0, "must be at least 1"),
        ("SESSIONS_GIL_SWITCH_INTERVAL", 1.0, "must be between 0.0001 and 0.1"),
        ("SESSIONS_RATE_LIMIT", float("nan"), "must be at least 0"),
        ("SESSIONS_RATE_LIMIT", "30", "must be a number"),
        ("SESSIONS_RATE_BURST", 2.5, "must be an int"),
        ("SESSIONS_RATE_BURST", True, "must be an int"),
        ("SESSIONS_ALLOWED_ORIGINS", "https://app.example.com", "must be a list of strings"),
    ],
)
def test_a_bad_setting_is_improperly_configured_naming_it(name: str, value: Any, message: str) -> None:
    before = dict(vars(app_settings))
    with pytest.raises(ImproperlyConfigured, match=f"^{name}=.* {message}$"):
        with override_settings(**{name: value}):
            pass
    assert vars(app_settings) == before


def test_a_presence_ttl_not_longer_than_the_heartbeat_stops_start_up() -> None:
    # Else the processes take each other for dead between heartbeats and delete live connections.
    result = run_python("import django; django.setup()", SESSIONS_PRESENCE_HEARTBEAT="4", SESSIONS_PRESENCE_TTL="2")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "SESSIONS_PRESENCE_TTL=2.0 must be more than SESSIONS_PRESENCE_HEARTBEAT=4.0" in last, result.stderr
