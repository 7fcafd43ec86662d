"""sessions_app.sockets against real servers: daphne and uvicorn, in subprocesses on free loopback
ports, serve tests/sockets_app.py; a raw-socket client with a 4 KiB receive buffer completes the
WebSocket handshake, asks for a flood of 64 KiB frames and then stops reading.
"""

import base64
import contextlib
import datetime
import functools
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from sessions_app.sockets import socket_buffer
from tests import live
from tests.live import ROOT, wait_until
from tests.sockets_app import FRAME

FLOOD = 256  # frames of 64 KiB: 16 MiB, past what the kernel takes (tcp_wmem's 4 MiB and the client's buffer)
FRAME_ON_WIRE = len(FRAME) + 10  # a server frame's header: 2 bytes and a 64-bit length
HIGH_WATER = 64 * 1024  # asyncio's and uvloop's default, and websockets' write_limit
MiB = 1024 * 1024
TIMEOUT = 5.0  # seconds, for every wait


# --- servers ---------------------------------------------------------------------------------


class AppServer(live.Server):
    """``python -m <server> ... tests.sockets_app:app`` on a free port (tests/live.py); ``tls`` is
    the client's context when it serves TLS; the app writes its records into ``logs``."""

    def __init__(self, workdir: Path, argv: list[str], tls: ssl.SSLContext | None = None) -> None:
        env = {**os.environ, "SOCKETS_APP_LOG_DIR": str(workdir)}
        argv = [sys.executable, "-m", *argv, "tests.sockets_app:app"]
        super().__init__(workdir, env, argv, name=argv[2], start_timeout=10)
        self.tls, self.logs = tls, workdir


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.write_bytes(key_bytes)
    return cert_path, key_path


@contextlib.contextmanager
def serving(tmp_path_factory: pytest.TempPathFactory, name: str, argv: list[str], **kwargs: Any) -> Iterator[AppServer]:
    server = AppServer(tmp_path_factory.mktemp(name), argv, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with serving(tmp_path_factory, "daphne", ["daphne", "-b", "127.0.0.1", "-p", "{port}"]) as server:
        yield server


@pytest.fixture(scope="module")
def daphne_tls(tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]) -> Iterator[AppServer]:
    cert, key = tls_files
    endpoint = f"ssl:port={{port}}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    context = ssl.create_default_context(cafile=cert)
    with serving(tmp_path_factory, "daphne-tls", ["daphne", "-e", endpoint], tls=context) as server:
        yield server


UVICORN = [
    pytest.param(("websockets", "auto", False), id="websockets"),
    pytest.param(("websockets-sansio", "auto", False), id="websockets-sansio"),
    pytest.param(("auto", "auto", False), id="auto"),
    pytest.param(("websockets-sansio", "asyncio", False), id="websockets-sansio-asyncio-loop"),
    pytest.param(("auto", "auto", True), id="auto-tls"),
    pytest.param(("wsproto", "auto", False), id="wsproto"),  # wsproto: requirements-dev.txt
]


@pytest.fixture(scope="module", params=UVICORN)
def uvicorn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    ws, loop, tls = request.param
    argv = ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--ws", ws, "--loop", loop, "--log-level", "warning"]
    context = None
    if tls:
        cert, key = request.getfixturevalue("tls_files")
        argv += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        context = ssl.create_default_context(cafile=cert)
    with serving(tmp_path_factory, f"uvicorn-{ws}", argv, tls=context) as server:
        yield server


# --- the client and the app's records ----------------------------------------------------------


class Client:
    """A WebSocket client that sends text frames and reads nothing until ``read_until_closed``."""

    def __init__(self, server: AppServer, log: str) -> None:
        self.records = server.logs / f"{log}.jsonl"
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the TCP window
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", server.port))
        self.sock = raw
        if server.tls:
            self.sock = server.tls.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /?log={log} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1024)
            assert chunk, f"closed during the handshake: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101 "), response
        self.wait_for("connect")

    def send_text(self, text: str) -> None:
        """One masked text frame (RFC 6455 section 5.3: a client masks every frame)."""
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        self.sock.sendall(
            bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )

    def read_until_closed(self) -> tuple[str, int]:
        """Read what the kernel still holds until the connection ends: ("reset" or "eof", bytes read).

        Under TLS a reset may come as a stream cut without TLS's close_notify (``SSLEOFError``).
        """
        total = 0
        with self.sock:
            while True:
                try:
                    chunk = self.sock.recv(MiB)
                except (ConnectionResetError, ssl.SSLEOFError):
                    return "reset", total
                if not chunk:
                    return "eof", total
                total += len(chunk)

    def events(self, event: str) -> list[dict[str, Any]]:
        lines = self.records.read_text().splitlines() if self.records.exists() else []
        return [record for record in map(json.loads, lines) if record["event"] == event]

    def wait_for(self, event: str) -> dict[str, Any]:
        return wait_until(lambda: (self.events(event) or [None])[-1], TIMEOUT, f"the app's {event!r} in {self.records}")

    def abort(self) -> tuple[str, int]:
        """Ask the app to abort; the connection's end as the client sees it."""
        self.send_text("abort")
        assert self.wait_for("abort")["buffered"] == 0
        return self.read_until_closed()


pytestmark = pytest.mark.slow


# --- daphne: every frame is buffered -----------------------------------------------------------


@pytest.mark.parametrize("server", ["daphne", "daphne_tls"])
def test_daphne_buffers_every_frame_for_a_client_that_does_not_read(
    server: str, request: pytest.FixtureRequest
) -> None:
    client = Client(request.getfixturevalue(server), log="flood")
    assert client.wait_for("connect")["buffer"] == "TwistedBuffer"
    client.send_text(f"flood {FLOOD}")
    flooded = client.wait_for("flooded")  # send never waited
    assert not client.events("blocked")
    sizes = [record["buffered"] for record in client.events("sent")]
    assert flooded["buffered"] == sizes[-1] > 8 * MiB  # the kernel took at most a few MiB of the 16
    assert sizes[-1] <= FLOOD * FRAME_ON_WIRE * 1.01  # TLS adds a few bytes per 16 KiB record
    assert flooded["rss"] - client.wait_for("connect")["rss"] > sizes[-1] // 2  # held in the server's memory
    client.abort()


@pytest.mark.parametrize("server", ["daphne", "daphne_tls"])
def test_daphne_abort_resets_the_connection_and_the_app_gets_disconnect(
    server: str, request: pytest.FixtureRequest
) -> None:
    client = Client(request.getfixturevalue(server), log="abort")
    client.send_text(f"flood {FLOOD}")
    flooded = client.wait_for("flooded")
    end, read = client.abort()
    assert end == "reset"
    assert read < FLOOD * FRAME_ON_WIRE - flooded["buffered"]  # what daphne held was never sent
    # ... and is freed at once, not at the garbage collector's next full collection.
    if flooded["heap"] is not None:
        assert client.wait_for("abort")["heap"] < flooded["heap"] - flooded["buffered"] // 2
    assert client.wait_for("disconnect")["code"] == 1006


@pytest.mark.parametrize("server", ["daphne", "daphne_tls"])
def test_daphne_send_shared_writes_the_prepared_frame(server: str, request: pytest.FixtureRequest) -> None:
    client = Client(request.getfixturevalue(server), log=f"shared-{server}")
    client.send_text("shared héllo wörld")
    assert client.wait_for("shared")["sent"] == [True, True]
    payload = "héllo wörld".encode()
    frame = bytes([0x81, len(payload)]) + payload  # FIN + text, unmasked (a server's frame), no extension bits
    received = b""
    while len(received) < 2 * len(frame):
        chunk = client.sock.recv(4096)
        assert chunk, f"closed after {received!r}"
        received += chunk
    assert received == frame * 2
    client.sock.close()
    client.wait_for("disconnect")


def test_uvicorn_send_shared_declines(uvicorn: AppServer) -> None:
    client = Client(uvicorn, log=f"shared-uvicorn-{uuid.uuid4().hex}")
    client.send_text("shared hello")
    assert client.wait_for("shared")["sent"] == [False, False]
    client.sock.close()


def test_daphne_transport_already_has_twisted_http_channel_as_its_producer(daphne: AppServer) -> None:
    client = Client(daphne, log="producer")
    client.send_text("register-producer")
    assert client.wait_for("register-producer")["error"] == "RuntimeError"
    assert "HTTPChannel" in client.wait_for("register-producer")["message"]
    client.abort()


# --- uvicorn: send waits at the high-water mark ------------------------------------------------


def test_uvicorn_send_waits_while_the_buffer_is_over_the_high_water_mark(uvicorn: AppServer) -> None:
    client = Client(uvicorn, log="flood")
    assert client.wait_for("connect")["buffer"] == "AsyncioBuffer"
    client.send_text(f"flood {FLOOD}")
    blocked = client.wait_for("blocked")
    sent = client.events("sent")
    assert blocked["i"] == len(sent) < FLOOD  # the send of frame i is still waiting
    assert not client.events("flooded")
    # The server writes a frame when its buffer is under the high-water mark (TLS: the TLS layer's
    # limit, 512 KiB in asyncio), so it holds at most that and one frame more.
    limit = (512 * 1024 if uvicorn.tls else HIGH_WATER) + FRAME_ON_WIRE
    assert HIGH_WATER < blocked["buffered"] <= limit
    assert max(record["buffered"] for record in sent) <= limit
    client.abort()


def test_uvicorn_abort_resets_the_connection_and_wakes_the_waiting_send(uvicorn: AppServer) -> None:
    client = Client(uvicorn, log="abort")
    client.send_text(f"flood {FLOOD}")
    held = client.wait_for("blocked")["buffered"]
    in_kernel = len(client.events("sent")) * FRAME_ON_WIRE - held  # megabytes on loopback
    end, read = client.abort()
    assert end == "reset"  # SO_LINGER 0: not a FIN after the kernel's buffer
    assert read < in_kernel
    assert client.wait_for("disconnect")["code"] in (1005, 1006)  # 1006 from websockets' legacy protocol


def test_uvicorn_serves_the_ws_implementation_asked_for(uvicorn: AppServer, request: pytest.FixtureRequest) -> None:
    ws = request.node.callspec.params["uvicorn"][0]
    client = Client(uvicorn, log="owner")
    owner = client.wait_for("connect")["owner"]
    assert owner == {"websockets": "WebSocketProtocol", "wsproto": "WSProtocol"}.get(ws, "WebSocketsSansIOProtocol")
    client.abort()


# --- servers it does not know ------------------------------------------------------------------


async def test_socket_buffer_is_none_for_channels_application_communicator() -> None:
    found = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        found.append(socket_buffer(send))
        await send({"type": "websocket.accept"})

    communicator = ApplicationCommunicator(app, {"type": "websocket", "path": "/"})
    await communicator.send_input({"type": "websocket.connect"})
    assert await communicator.receive_output(TIMEOUT) == {"type": "websocket.accept"}
    assert found == [None]
    await communicator.wait(TIMEOUT)


def test_socket_buffer_is_none_for_other_callables() -> None:
    async def send(message: dict[str, Any]) -> None: ...

    assert socket_buffer(send) is None
    assert socket_buffer(functools.partial(send)) is None
    assert socket_buffer(functools.partial(print, object())) is None
    assert socket_buffer(Client.send_text.__get__(object())) is None


def test_socket_buffer_imports_no_server() -> None:
    code = (
        "import sys; from sessions_app.sockets import socket_buffer; import functools; "
        "socket_buffer(print); socket_buffer(functools.partial(print, 1)); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'daphne', 'twisted', 'uvicorn', 'autobahn'}))"
    )
    argv = [sys.executable, "-c", code]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"
