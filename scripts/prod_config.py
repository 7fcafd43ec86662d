"""The production layout's settings (from the environment) and nginx's configuration, rendered
from deploy/nginx.conf.template: the part of scripts/prod.py that starts nothing."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
# Longer than every heartbeat on an open socket: daphne pings every 20 s, the browser client
# sends `ping` every 25 s (static/sessions/client.js).
PROXY_TIMEOUT = 75


class ConfigError(Exception):
    """The environment cannot start the layout; the message says what to set."""


@dataclass(frozen=True)
class Config:
    """The layout's settings, from the environment (``from_env``)."""

    processes: int
    listen: str
    run_dir: Path
    client_timeout: int
    max_body: str
    nginx: str
    nginx_workers: str
    worker_connections: int
    daphne_args: tuple[str, ...]
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str], *, service_env: bool = True) -> Config:
        """The settings; raises ConfigError naming every variable that is missing or bad.
        ``service_env``: also require what the daphnes need (DATABASE_URL, REDIS_URL or REDIS_SENTINELS
        with REDIS_SENTINEL_MASTER, the secret key)."""
        problems = []
        if service_env:
            if not env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
                problems.append("DATABASE_URL must name the PostgreSQL database (postgres://user@host:5432/name)")
            if env.get("REDIS_SENTINELS"):
                # Redis Sentinel instead of one Redis (project/redis_hosts.py, which checks the rest).
                if env.get("REDIS_URL"):
                    problems.append("set REDIS_URL or REDIS_SENTINELS, not both")
                if not env.get("REDIS_SENTINEL_MASTER"):
                    problems.append("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the sentinels monitor)")
            elif not env.get("REDIS_URL", "").startswith(("redis://", "rediss://", "unix://")):
                problems.append(
                    "REDIS_URL must name the Redis server (redis://host:6379/0), or REDIS_SENTINELS and "
                    "REDIS_SENTINEL_MASTER the sentinels"
                )
            key = env.get("DJANGO_SECRET_KEY", "")
            if not key:
                problems.append("DJANGO_SECRET_KEY must be set (50 random characters, the same for every process)")
            elif len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
                # Django's own rule (security.W009, `manage.py check --deploy`).
                problems.append(
                    "DJANGO_SECRET_KEY is too weak: at least 50 characters, 5 different, not django-insecure-... "
                    "(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
                )
            if not [name for name in env.get("DJANGO_ALLOWED_HOSTS", "").split(",") if name.strip()]:
                problems.append(
                    "DJANGO_ALLOWED_HOSTS must name the host(s) clients use (sessions.example.com): "
                    "without it every request is refused (400)"
                )
            if env.get("DJANGO_DEBUG", "0").lower() not in ("0", "false", "no", "off", "f", "n"):
                problems.append("DJANGO_DEBUG must be 0: with 1, every request nginx forwards is refused (403)")

        def number(name: str, default: int, low: int) -> int:
            raw = env.get(name, str(default))
            if not raw.isdigit() or int(raw) < low:
                problems.append(f"{name}={raw!r} must be a whole number, at least {low}")
                return default
            return int(raw)

        processes = number("PROCESSES", 2, 1)
        client_timeout = number("PROD_CLIENT_TIMEOUT", 10, 1)
        worker_connections = number("NGINX_WORKER_CONNECTIONS", 16384, 16)
        listen = env.get("PROD_LISTEN", "127.0.0.1:8080")
        if not re.fullmatch(r"(\S+:)?\d+", listen):
            problems.append(f"PROD_LISTEN={listen!r} must be host:port or port")
        max_body = env.get("PROD_MAX_BODY", "1m")
        if not re.fullmatch(r"\d+[kKmM]?", max_body):
            problems.append(f"PROD_MAX_BODY={max_body!r} must be a size nginx reads (512k, 1m)")
        tls_cert, tls_key = env.get("PROD_TLS_CERT", ""), env.get("PROD_TLS_KEY", "")
        if bool(tls_cert) != bool(tls_key):
            problems.append("PROD_TLS_CERT and PROD_TLS_KEY go together (the certificate chain and its key, PEM)")
        workers = env.get("NGINX_WORKERS", "auto")
        if not re.fullmatch(r"auto|[1-9]\d*", workers):
            problems.append(f"NGINX_WORKERS={workers!r} must be auto or a number")
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            processes=processes,
            listen=listen,
            run_dir=Path(env.get("PROD_RUN_DIR") or ROOT / "run").absolute(),
            client_timeout=client_timeout,
            max_body=max_body,
            nginx=env.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx",
            nginx_workers=workers,
            worker_connections=worker_connections,
            daphne_args=tuple(shlex.split(env.get("DAPHNE_ARGS", ""))),
            tls_cert=tls_cert and str(Path(tls_cert).absolute()),
            tls_key=tls_key and str(Path(tls_key).absolute()),
        )

    def socket_path(self, index: int) -> Path:
        return self.run_dir / f"daphne-{index}.sock"


def render(config: Config, static_root: Path, user: str | None, max_files: int | None = None) -> str:
    """deploy/nginx.conf.template with this layout's values; ``user``: nginx's workers' account
    (for a master started as root; None: no ``user`` line, the workers run as the master);
    ``max_files``: the most file descriptors nginx may ask for (this process's hard limit)."""
    servers = "\n".join(f"        server unix:{config.socket_path(i)} max_fails=0;" for i in range(config.processes))
    tls = "        # TLS: PROD_TLS_CERT and PROD_TLS_KEY unset, plain HTTP (a load balancer terminates it)"
    if config.tls_cert:
        tls = "\n".join(
            f"        {line}"
            for line in (
                f"ssl_certificate {config.tls_cert};",
                f"ssl_certificate_key {config.tls_key};",
                "ssl_protocols TLSv1.2 TLSv1.3;",
                "ssl_session_cache shared:tls:10m;",
                "ssl_session_timeout 1d;",
            )
        )
    values = {
        "tls": tls,
        "user": f"user {user};" if user else "# user: the account that started nginx",
        "workers": config.nginx_workers,
        "run_dir": str(config.run_dir),
        "nofile": str(min(config.worker_connections * 2, max_files or sys.maxsize)),
        "worker_connections": str(config.worker_connections),
        "header_timeout": str(config.client_timeout),
        "body_timeout": str(config.client_timeout),
        "max_body": config.max_body,
        "upstream_servers": servers,
        "listen": config.listen + (" ssl" if config.tls_cert else ""),
        "static_root": str(static_root),
        "proxy_timeout": str(PROXY_TIMEOUT),
    }
    text = TEMPLATE.read_text()
    missing = set(re.findall(r"{{(\w+)}}", text)) - set(values)
    assert not missing, f"no value for {missing}"
    return re.sub(r"{{(\w+)}}", lambda match: values[match[1]], text)
