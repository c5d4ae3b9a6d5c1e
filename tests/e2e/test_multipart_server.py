"""Multipart parts against the real served process (uvicorn, local mode): a connection cut in the middle
of a part leaves that part not received and the server well; the part sent again completes the upload."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.server import Server
from tests.e2e.test_browser_multipart import PART, media_file

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path / "data", workers=0, LOG_LEVEL="INFO") as served:
        yield served


def cut_mid_part(server: Server, url: str, body: bytes) -> None:
    """Send the request's head and half the part, then drop the connection."""
    target = urlsplit(url)
    head = (
        f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body[: len(body) // 2])
        sock.shutdown(socket.SHUT_RDWR)


def test_a_part_cut_mid_way_is_not_received_and_is_sent_again(server: Server, tmp_path: Path) -> None:
    video = media_file(tmp_path / "cut.ts", parts=1.5).read_bytes()
    api = httpx.Client(base_url=server.url, timeout=60)
    ticket = api.post("/api/uploads", json={"filename": "cut.ts", "size": len(video)}).json()
    upload_id = ticket["upload_id"]
    urls = {
        p["number"]: p["url"]
        for p in api.post(f"/api/uploads/{upload_id}/parts", json={"numbers": [1, 2]}).json()["parts"]
    }
    first = video[:PART]
    cut_mid_part(server, urls[1], first)
    deadline = time.monotonic() + 10
    while "client went away" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)  # the server noticed the cut (its log line), then nothing is marked received
    assert api.get(f"/api/uploads/{upload_id}").json()["received"] == []
    etags = {n: api.put(urls[n], content=video[(n - 1) * PART : n * PART]).headers["etag"] for n in (1, 2)}
    assert api.get("/health").status_code == 200
    parts = [{"number": n, "etag": e} for n, e in etags.items()]
    done = api.post(f"/api/uploads/{upload_id}/complete", json={"parts": parts})
    assert done.status_code == 200, done.text
    stored = Path(server.env["DATA_DIR"]) / "uploads" / upload_id / "source"
    assert stored.read_bytes() == video
    assert "Traceback" not in server.log.read_text()
