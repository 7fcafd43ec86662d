"""scripts/prod.py refuses an environment that cannot run the production layout, before starting
anything, and renders the nginx configuration the systemd units use (issue 13, item 1). The layout
itself runs in tests/test_production.py (marker ``prod``)."""

import importlib
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEY = secrets.token_urlsafe(50)  # a key Django's check W009 accepts


def prod(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    prefixes = ("DJANGO_", "PROD_", "PYTEST_", "REDIS_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    for name in ("DATABASE_URL", "PROCESSES", "NGINX_WORKERS", "NGINX_WORKER_CONNECTIONS"):
        env.pop(name, None)
    env.update(variables)
    return subprocess.run(  # noqa: S603 - the script under test
        [sys.executable, "scripts/prod.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_it_refuses_to_start_without_postgresql_redis_and_a_secret_key(tmp_path: Path) -> None:
    result = prod(PROD_RUN_DIR=str(tmp_path / "run"))
    assert result.returncode == 2 and result.stdout == ""
    for name in (
        "DATABASE_URL must name the PostgreSQL database",
        "REDIS_URL",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
    ):
        assert name in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was started or made


def test_it_refuses_sqlite_debug_and_bad_numbers() -> None:
    result = prod(
        DATABASE_URL="sqlite:///db.sqlite3",
        REDIS_URL="redis://127.0.0.1:6379/0",
        DJANGO_SECRET_KEY=KEY,
        DJANGO_ALLOWED_HOSTS="localhost",
        DJANGO_DEBUG="1",
        PROCESSES="0",
        PROD_LISTEN="everywhere",
    )
    assert result.returncode == 2
    assert "DATABASE_URL must name the PostgreSQL database" in result.stderr
    assert "DJANGO_DEBUG must be 0" in result.stderr
    assert "PROCESSES='0' must be a whole number, at least 1" in result.stderr
    assert "PROD_LISTEN='everywhere'" in result.stderr
    assert "REDIS_URL" not in result.stderr


def test_redis_sentinel_takes_the_place_of_redis_url(tmp_path: Path) -> None:
    """REDIS_SENTINELS with REDIS_SENTINEL_MASTER instead of REDIS_URL (docs/deployment.md, "Redis
    Sentinel"); not with it, nor without the master name."""
    base = {
        "DATABASE_URL": "postgres://x@127.0.0.1:1/x",
        "DJANGO_SECRET_KEY": KEY,
        "DJANGO_ALLOWED_HOSTS": "localhost",
        "PROCESSES": "0",
    }
    accepted = prod(REDIS_SENTINELS="127.0.0.1:26379", REDIS_SENTINEL_MASTER="mymaster", **base)
    assert accepted.returncode == 2 and "PROCESSES='0'" in accepted.stderr
    assert "REDIS" not in accepted.stderr
    both = prod(REDIS_SENTINELS="127.0.0.1:26379", REDIS_URL="redis://127.0.0.1:6379/0", **base)
    assert "set REDIS_URL or REDIS_SENTINELS, not both" in both.stderr
    assert "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER" in both.stderr


def test_render_writes_the_configuration_for_the_systemd_units(tmp_path: Path) -> None:
    out = tmp_path / "nginx.conf"
    result = prod(
        "render", str(out), "--user", "www-data", "--static-root", "/srv/interactive/staticfiles",
        PROCESSES="3", PROD_RUN_DIR="/run/interactive", PROD_LISTEN="127.0.0.1:8080",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = out.read_text()
    assert "{{" not in config
    assert "user www-data;" in config
    assert "alias /srv/interactive/staticfiles/;" in config
    servers = [line.strip() for line in config.splitlines() if line.strip().startswith("server unix:")]
    assert servers == [f"server unix:/run/interactive/daphne-{i}.sock max_fails=0;" for i in range(3)]
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """deploy/systemd's units, with this checkout's interpreter in place of /srv/interactive's
    (verify checks that each command exists); no systemd runs them here."""
    units = ROOT / "deploy" / "systemd"
    names = sorted(path.name for path in units.iterdir() if path.suffix in (".service", ".target"))
    assert names == ["daphne@.service", "interactive-nginx.service", "interactive-setup.service", "interactive.target"]
    for name in names:
        text = (units / name).read_text().replace("/srv/interactive/.venv/bin/python", sys.executable)
        (tmp_path / name).write_text(text)
    checked = [str(tmp_path / name.replace("@.", "@0.")) for name in names]
    result = subprocess.run(  # noqa: S603 - systemd's own checker
        ["systemd-analyze", "verify", *checked],  # noqa: S607 - Debian's, on the PATH
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_readme_documents_every_variable_the_script_reads() -> None:
    source = "".join((ROOT / "scripts" / name).read_text() for name in ("prod.py", "prod_config.py"))
    read = set(re.findall(r'env\.get\("([A-Z_]+)"', source)) | set(re.findall(r'number\("([A-Z_]+)"', source))
    assert {"PROCESSES", "PROD_LISTEN", "NGINX", "DAPHNE_ARGS"} <= read
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("\n## Settings of the production layout\n", 1)[1].split("\n## ", 1)[0]
    own = set(re.findall(r"^\| `([A-Z_]+)` \|", layout, re.MULTILINE))
    service = ["DATABASE_URL", "DJANGO_ALLOWED_HOSTS", "DJANGO_DEBUG", "DJANGO_SECRET_KEY", "REDIS_SENTINELS"]
    service.append("REDIS_SENTINEL_MASTER")
    assert sorted(read - own) == [*service, "REDIS_URL"]  # in "Settings"
    assert sorted(own - read) == []


def test_it_refuses_a_listen_address_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = prod(
            DATABASE_URL="postgres://nobody@127.0.0.1:1/none",  # never reached: the check comes first
            REDIS_URL="redis://127.0.0.1:1/0",
            DJANGO_SECRET_KEY=KEY,
            DJANGO_ALLOWED_HOSTS="localhost",
            PROD_LISTEN=f"127.0.0.1:{port}",
            PROD_RUN_DIR=str(tmp_path / "run"),
            NGINX="/bin/true",  # any executable: this test needs no nginx
        )
    assert result.returncode == 2
    assert f"nginx cannot listen on PROD_LISTEN=127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture
def supervisor_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """scripts/prod_supervisor.py, imported as scripts/prod.py imports it (scripts/ on the path)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module("prod_supervisor")


def test_a_daphne_that_keeps_exiting_is_started_again_until_the_limit_then_given_up(
    supervisor_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy of scripts/prod_supervisor.py with real processes in place of daphne: one that
    exits by itself is started again (its count and delay said), and only one that exits more than
    CRASH_LIMIT times within CRASH_WINDOW seconds makes supervise() give up (the layout: exit 1)."""
    config_module = importlib.import_module("prod_config")
    env = {"DATABASE_URL": "postgres://x@127.0.0.1/x", "REDIS_URL": "redis://127.0.0.1:1/0", "DJANGO_SECRET_KEY": KEY}
    env["DJANGO_ALLOWED_HOSTS"] = "localhost"
    config = config_module.Config.from_env({**env, "PROCESSES": "1", "PROD_RUN_DIR": str(tmp_path)})
    monkeypatch.setattr(supervisor_module, "daphne_argv", lambda config, index: [sys.executable, "-c", "exit(3)"])
    monkeypatch.setattr(supervisor_module, "RESTART_DELAY", 0.0)
    daphnes = supervisor_module.Daphnes(config, lambda: False)
    (tmp_path / "daphne-0.sock").touch()  # left by a killed process: removed before each start
    first = daphnes.start("daphne-0")
    assert not (tmp_path / "daphne-0.sock").exists()
    assert (tmp_path / "daphne-0.pid").read_text() == f"{first}\n"
    starts = 1
    while daphnes.supervise():
        if daphnes.children["daphne-0"].process.pid != first:
            first, starts = daphnes.children["daphne-0"].process.pid, starts + 1
        assert starts <= supervisor_module.CRASH_LIMIT + 1, "started again past the limit"
        time.sleep(0.02)
    daphnes.wait_all()
    output = capsys.readouterr().out
    assert starts == supervisor_module.CRASH_LIMIT + 1
    assert "exited by itself with 3 after" in output and "(unexpected exit 1 in 60 s): starting it again" in output
    assert f"its {supervisor_module.CRASH_LIMIT + 1}th unexpected exit in 60 s: giving up" in output


@pytest.mark.parametrize("key", ["short", "k" * 50, "django-insecure-" + "abcdefghij" * 5])
def test_it_refuses_a_weak_secret_key_as_django_check_w009_does(key: str) -> None:
    result = prod(DATABASE_URL="postgres://x@127.0.0.1:1/x", REDIS_URL="redis://127.0.0.1:1/0",
                  DJANGO_SECRET_KEY=key, DJANGO_ALLOWED_HOSTS="localhost")  # fmt: skip
    assert result.returncode == 2 and "DJANGO_SECRET_KEY is too weak: at least 50 characters" in result.stderr
    assert "ALLOWED_HOSTS" not in result.stderr
