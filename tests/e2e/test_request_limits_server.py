"""Request limits against the real served process (uvicorn, as `make run`): chunked uploads over the
limit, a client vanishing mid-upload, header floods, and what is left on disk afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

MAX_UPLOAD = 300_000
BOUNDARY = "e2e-limits"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("limits") / "data"
    with Server(data, workers=0, MAX_UPLOAD_BYTES=str(MAX_UPLOAD), LOG_LEVEL="INFO") as served:
        yield served


def leftovers(server: Server) -> list[Path]:
    data = Path(server.env["DATA_DIR"])
    places = [data / "tmp", data / "uploads"]
    files = [p for place in places if place.exists() for p in place.rglob("*") if p.is_file()]
    return [p for p in files if p.parent != data / "tmp" or p.suffix != ".lock"]  # a live scratch claim


def server_has_read(sock: socket.socket) -> bool:
    """Whether everything sent on this loopback connection has been read by the process at the other end:
    nothing waits in this end's send queue nor in that end's receive queue (/proc/net/tcp)."""
    ours, theirs = (f"0100007F:{port:04X}" for port in (sock.getsockname()[1], sock.getpeername()[1]))
    queues = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()  # sl, local address, remote address, state, tx_queue:rx_queue, ...
        tx, rx = (int(n, 16) for n in fields[4].split(":"))
        queues[fields[1], fields[2]] = (tx, rx)
    return queues.get((ours, theirs), (1, 0))[0] == 0 and queues.get((theirs, ours), (0, 1))[1] == 0


def multipart_head() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="formats"\r\n\r\n720p\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()


def test_chunked_upload_over_the_limit_is_413_and_leaves_nothing(server: Server) -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield multipart_head()
        for _ in range(2000):  # 128 MB if nobody stopped it
            sent += 65536
            yield b"v" * 65536

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    try:
        response = httpx.post(f"{server.url}/api/jobs", content=endless(), headers=headers, timeout=30)
        assert response.status_code == 413
        assert response.json()["detail"] == "The file is larger than the 293.0 KiB limit."
    except httpx.HTTPError:
        pass  # the server may close the connection before the client has finished sending
    assert sent < 20 * 1024 * 1024  # stopped near the limit, not at the end of the stream
    assert leftovers(server) == []


def test_a_client_vanishing_mid_upload_is_one_quiet_line(server: Server) -> None:
    before = server.log.read_text()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
        )
        for part in (multipart_head(), b"v" * 50_000):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        wait_for(lambda: server_has_read(sock), "the server reading what was sent")  # then the client vanishes
    wait_for(lambda: "client went away" in server.log.read_text()[len(before) :], "the log line", timeout=30)
    new = server.log.read_text()[len(before) :]
    assert "client went away during POST /api/jobs" in new
    assert "Traceback" not in new and "ERROR" not in new
    assert leftovers(server) == []
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_header_floods_are_refused(server: Server) -> None:
    many = httpx.get(f"{server.url}/health", headers={f"x-h{n}": "1" for n in range(150)})
    assert many.status_code == 431
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(5)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n")
            answer = sock.recv(100)
        except OSError:
            answer = b""  # h11 may reset the connection before reading all of it
    assert not answer.startswith(b"HTTP/1.1 200")
    assert httpx.get(f"{server.url}/health").status_code == 200
