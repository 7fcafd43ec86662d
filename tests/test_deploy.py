"""Issue 11, item 9: debug pages never reach another machine, and ``manage.py check --deploy`` is
clean with the production settings the README documents (HTTPS, HSTS, Secure cookies; CSP).
Issue 13: the systemd units empty the metrics directory and a stale socket before they start.
"""

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient, Client

from project.asgi import application
from sessions_app.security import DEBUG_REFUSAL

ROOT = Path(__file__).resolve().parents[1]
REMOTE = "203.0.113.9"  # TEST-NET-3: never this machine


def readme_production_environment() -> dict[str, str]:
    """The variables the README's "Production settings" block exports (a ``$(...)`` value, the
    secret key, is made here as the comment says: 50 random characters)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Production settings\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    variables: dict[str, str] = {}
    for line in block.splitlines():
        if not line.startswith("export "):
            continue
        for word in shlex.split(line.removeprefix("export "), comments=True):
            name, value = word.split("=", 1)
            variables[name] = secrets.token_urlsafe(50) if value.startswith("$(") else value
    return variables


def check_deploy(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_", "SESSIONS_"))}
    env.pop("DATABASE_URL", None)
    env.update(variables)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- check --deploy -------------------------------------------------------------------------------


def test_the_readme_documents_a_production_environment() -> None:
    variables = readme_production_environment()
    assert variables["DJANGO_DEBUG"] == "0" and variables["DJANGO_HTTPS"] == "1"
    assert len(variables["DJANGO_SECRET_KEY"]) >= 50


def test_check_deploy_reports_no_issue_with_the_production_settings_the_readme_documents() -> None:
    result = check_deploy(readme_production_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_does_report_a_production_environment_without_https() -> None:
    # The test above would pass with a check that never runs: this one shows that it does.
    variables = {**readme_production_environment(), "DJANGO_HTTPS": "0"}
    result = check_deploy(variables)
    assert result.returncode != 0
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= set(
        re.findall(r"security\.W\d+", result.stdout + result.stderr)
    )


# --- DEBUG for loopback clients only --------------------------------------------------------------


@pytest.fixture
def debug(settings: Any) -> None:
    settings.DEBUG = True


def assert_refused(response: Any) -> None:
    assert response.status_code == 403
    assert response.content.decode() == DEBUG_REFUSAL
    assert b"DEBUG = True" not in response.content and b"URLconf" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/no/such/page", {}),  # a debug 404 lists the URL patterns
        ("/", {"HTTP_HOST": "attacker.example"}),  # a debug DisallowedHost 400 shows the settings
        ("/healthz", {}),
        ("/api/v1/token/", {}),
    ],
)
def test_with_debug_on_a_client_elsewhere_gets_403_and_no_debug_page(debug: None, path: str, headers: Any) -> None:
    assert_refused(Client().get(path, REMOTE_ADDR=REMOTE, **headers))


@pytest.mark.django_db
def test_with_debug_on_a_loopback_client_behind_a_proxy_is_elsewhere_too(debug: None) -> None:
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert_refused(Client().get("/no/such/page", REMOTE_ADDR="127.0.0.1", **{header: REMOTE}))


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_with_debug_on_a_loopback_client_gets_the_debug_pages(debug: None, address: str) -> None:
    response = Client().get("/no/such/page", REMOTE_ADDR=address)
    assert response.status_code == 404
    assert b"URLconf" in response.content  # Django's debug 404


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["", "not an address", "10.0.0.1", "fe80::1"])
def test_with_debug_on_an_unknown_or_private_address_is_elsewhere(debug: None, address: str) -> None:
    assert_refused(Client().get("/no/such/page", REMOTE_ADDR=address))


class AsyncClientAt(AsyncClient):
    """Django's AsyncClient (ASGI requests through the handler and every middleware) from ``address``."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        return {**super()._base_scope(**request), "client": [self.address, 50000]}


@pytest.mark.django_db(transaction=True)
async def test_with_debug_on_the_asgi_handler_refuses_a_client_elsewhere(debug: None) -> None:
    assert_refused(await AsyncClientAt(REMOTE).get("/no/such/page"))
    loopback = await AsyncClientAt("127.0.0.1").get("/no/such/page")
    assert loopback.status_code == 404 and b"URLconf" in loopback.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("client", "headers", "accepted"),
    [
        (["127.0.0.1", 50000], [], True),
        (["::1", 50000], [], True),
        ([REMOTE, 50000], [], False),
        (["127.0.0.1", 50000], [(b"x-forwarded-for", REMOTE.encode())], False),
        (None, [], False),  # a Unix socket a proxy may front
    ],
)
async def test_with_debug_on_a_websocket_from_elsewhere_is_refused_too(debug: None, client, headers, accepted) -> None:
    communicator = WebsocketCommunicator(application, "/api/v1/socket", headers=headers)
    communicator.scope["client"] = client
    connected, _ = await communicator.connect()
    assert connected is accepted
    await communicator.disconnect()


@pytest.mark.django_db
def test_with_debug_off_every_client_is_served_without_debug_pages() -> None:
    assert Client().get("/", REMOTE_ADDR=REMOTE).status_code == 200
    missing = Client().get("/no/such/page", REMOTE_ADDR=REMOTE)
    assert missing.status_code == 404 and b"URLconf" not in missing.content


# --- HTTPS and CSP --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_https_http_requests_are_redirected_except_the_health_check(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/").status_code == 301
    assert Client().get("/healthz").status_code in (200, 503)  # probed over plain HTTP by a balancer
    secure = Client().get("/", secure=True)
    assert secure.status_code == 200


@pytest.mark.django_db
def test_the_pages_carry_a_content_security_policy_of_this_origin_only() -> None:
    response = Client().get("/")
    directives = dict(
        [*part.split(" ", 1), ""][:2] for part in (p.strip() for p in response["Content-Security-Policy"].split(";"))
    )
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in response["Content-Security-Policy"]
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"


# --- the systemd units (deploy/systemd) -----------------------------------------------------------

UNITS = ROOT / "deploy" / "systemd"


def exec_lines(unit: str, key: str, instance: str = "") -> list[list[str]]:
    """The unit's ``key=`` command lines (``ExecStartPre``...), as systemd would run them: its
    specifiers (``%i``, ``%%``) and ``$$`` (a literal ``$``) undone, then split as systemd does
    (shell-like quoting). Variables from the environment file are left to the shell they run in."""
    commands = []
    for line in (UNITS / unit).read_text().splitlines():
        if line.startswith(f"{key}="):
            text = line.split("=", 1)[1].replace("%i", instance).replace("%%", "%").replace("$$", "$")
            commands.append(shlex.split(text))
    return commands


def test_the_setup_unit_empties_the_metrics_directory_before_the_processes_start(tmp_path: Path) -> None:
    """interactive-setup.service (which every daphne@N requires, started once before them) empties
    PROMETHEUS_MULTIPROC_DIR: files of the processes of an earlier start (counters and live gauges
    of pids that are gone) must not count in /metrics (docs/metrics.md). Its own command runs here."""
    environment = (UNITS / "environment.example").read_text()
    assert "\nPROMETHEUS_MULTIPROC_DIR=/run/interactive/metrics\n" in environment
    for unit in ("interactive-setup.service", "daphne@.service"):
        assert "EnvironmentFile=/etc/interactive/environment" in (UNITS / unit).read_text()
    [empty] = [command for command in exec_lines("interactive-setup.service", "ExecStartPre") if "rm" in command[-1]]
    metrics = tmp_path / "metrics"
    (metrics / "stale").mkdir(parents=True)
    for name in ("counter_4242.db", "gauge_livesum_4242.db", "histogram_4243.db", "stale/x"):
        (metrics / name).write_bytes(b"\0" * 64)
    env = {"PATH": os.environ["PATH"], "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    subprocess.run(empty, env=env, check=True, timeout=10)  # noqa: S603 - the unit's own command
    assert metrics.is_dir() and list(metrics.iterdir()) == []
    assert metrics.stat().st_mode & 0o777 == 0o700
    # Without the variable (one process, no multiprocess mode) it does nothing and succeeds.
    subprocess.run(empty, env={"PATH": os.environ["PATH"]}, check=True, timeout=10)  # noqa: S603
    assert metrics.is_dir()


def test_a_daphne_unit_removes_the_socket_a_killed_process_left_before_it_starts(tmp_path: Path) -> None:
    """daphne cannot listen on a socket file that exists ("Address already in use"); a SIGKILL
    leaves it: daphne@N removes its own (only its own) before each start, so Restart=always works."""
    text = (UNITS / "daphne@.service").read_text()
    assert text.index("ExecStartPre=") < text.index("ExecStart=")
    [remove] = exec_lines("daphne@.service", "ExecStartPre", instance="1")
    assert remove[-1] == "/run/interactive/daphne-1.sock"
    remove[-1] = str(tmp_path / "daphne-1.sock")
    for name in ("daphne-0.sock", "daphne-1.sock"):
        (tmp_path / name).touch()
    subprocess.run(remove, check=True, timeout=10)  # noqa: S603 - the unit's own command
    assert sorted(path.name for path in tmp_path.iterdir()) == ["daphne-0.sock"]
    subprocess.run(remove, check=True, timeout=10)  # noqa: S603 - none left: no error either


def example_blocks() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """deploy/systemd/environment.example: its active ``KEY=VALUE`` lines, and each commented TLS
    block ``(b)``, ``(c)`` (``# KEY=VALUE`` lines after a ``# (x) ...`` line) by its letter."""
    active: dict[str, str] = {}
    blocks: dict[str, dict[str, str]] = {}
    letter = ""
    for line in (UNITS / "environment.example").read_text().splitlines():
        if match := re.match(r"# \(([a-z])\) ", line):
            letter = match[1]
        elif match := re.fullmatch(r"# ([A-Z_]+)=(\S*)", line):
            if letter:
                blocks.setdefault(letter, {})[match[1]] = match[2]
        elif match := re.fullmatch(r"([A-Z_]+)=(\S*)", line):
            active[match[1]] = match[2]
    return active, blocks


def test_the_environment_example_redirects_to_https_only_with_a_tls_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """As shipped (block (a): plain HTTP) nothing redirects to an https:// the port does not speak;
    block (b) (TLS at nginx) and (c) (at a load balancer) each set the two HTTPS settings; every
    block is an environment scripts/prod.py accepts (with a real secret key)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from prod_config import Config, ConfigError

    active, blocks = example_blocks()
    assert "DJANGO_HTTPS" not in active and "DJANGO_PROXY_SSL_HEADER" not in active
    assert sorted(blocks) == ["b", "c"]
    with pytest.raises(ConfigError, match="DJANGO_SECRET_KEY is too weak"):
        Config.from_env(active)  # change-me: refused until the copy is edited
    key = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    assert Config.from_env({**active, **key}).tls_cert == ""
    for letter, block in blocks.items():
        assert block["DJANGO_HTTPS"] == "1" and block["DJANGO_PROXY_SSL_HEADER"] == "1", letter
        config = Config.from_env({**active, **block, **key})
        assert bool(config.tls_cert) == (letter == "b") and config.listen == block["PROD_LISTEN"]
