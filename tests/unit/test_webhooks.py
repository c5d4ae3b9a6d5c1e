"""Webhooks against local receivers: signed job JSON when the job ends, queued as its own message (no
conversion waits for a receiver), one bounded attempt per delivery with the queue's back-off between
them, once per job, and refused private, loopback, link-local and metadata addresses."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import Env, MakeEnv, wait_for
from video_converter import cli, keys, runtime, webhooks
from video_converter.config import Settings
from video_converter.errors import InvalidRequest
from video_converter.jobs import JobService
from video_converter.model import OutputStatus, utcnow
from video_converter.outcome import Action, Outcome
from video_converter.queues import SqliteQueue
from video_converter.recovery import QUEUED_GRACE, reconcile
from video_converter.work import Notify, to_body
from video_converter.worker import Worker

SECRET = "webhook-test-secret"


class Receiver:
    """An HTTP server on 127.0.0.1 that answers the first ``failures`` POSTs with 500, then 204."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                status = 500 if len(receiver.requests) <= receiver.failures else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/video?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env(webhook_secret=SECRET, webhook_allow_private=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_clip_file

    return make_clip_file(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=0.5, size="64x64")


def job_with_callback(env: Env, clip: Path, url: str, formats: list[str]) -> str:
    with clip.open("rb") as fh:
        return env.service.upload_and_create(fh, "clip.mp4", formats, url).job_id


def test_signature_round_trip() -> None:
    body = b'{"job_id": "x"}'
    now = int(time.time())
    signature = webhooks.sign(SECRET, now, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    expected = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"  # as Stripe signs: "<timestamp>.<raw body>"
    assert webhooks.verify(SECRET, body, str(now), signature)
    assert not webhooks.verify(SECRET, body + b" ", str(now), signature)
    assert not webhooks.verify("other", body, str(now), signature)
    assert not webhooks.verify(SECRET, body, str(now + 1), signature)  # the timestamp is signed too


def test_a_replayed_request_is_refused_by_its_timestamp() -> None:
    body, then = b"{}", int(time.time()) - 301
    old = webhooks.sign(SECRET, then, body)
    assert not webhooks.verify(SECRET, body, str(then), old)  # older than the 5 minutes a receiver accepts
    assert webhooks.verify(SECRET, body, str(then), old, tolerance=600)
    assert not webhooks.verify(SECRET, body, "not-a-number", old)


def marker(env: Env, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(env.converted.get_bytes(keys.webhook_key(job_id)))
    return data


def test_the_last_output_queues_one_notice_delivered_signed_after_retries(env: Env, clip: Path) -> None:
    with Receiver(failures=2) as receiver:
        job_id = job_with_callback(env, clip, receiver.url, ["thumbnail", "mp3"])
        env.take()
        assert env.convert(job_id, "thumbnail").action is Action.ACK
        assert env.notices() == []  # mp3 is not final yet
        assert env.convert(job_id, "mp3").action is Action.ACK
        assert receiver.requests == []  # the conversion only queued the notice
        assert env.notices() == [Notify(job_id)] and marker(env, job_id)["state"] == "queued"
        env.convert(job_id, "mp3")  # a redelivery of finished work queues nothing more
        assert env.notices() == [Notify(job_id)]
        for attempt, delay in ((1, 5), (2, 20)):  # two 500s: back to the queue with its back-off
            assert env.outcome(Notify(job_id), attempt) == Outcome.retry(attempt, "webhook: HTTP 500")
            assert Outcome.retry(attempt, "").delay == delay
            assert marker(env, job_id) == {**marker(env, job_id), "state": "retrying", "attempts": attempt}
        assert env.outcome(Notify(job_id), 3).action is Action.ACK
        assert len(receiver.requests) == 3
        assert env.outcome(Notify(job_id), 4).action is Action.ACK  # a redelivery sends nothing more
        assert len(receiver.requests) == 3
    last = receiver.requests[-1]
    assert last["path"] == "/hooks/video?token=abc"
    assert last["headers"]["Content-Type"] == "application/json"
    # What a receiver does: HMAC-SHA256 of the raw body under the shared secret, compared in constant time.
    headers = last["headers"]
    assert webhooks.verify(SECRET, last["body"], headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"])
    event = json.loads(last["body"])
    assert event["type"] == headers["X-Webhook-Event"] == "job.completed"
    assert event["id"] == headers["X-Webhook-Id"] and event["id"].startswith("evt_")
    assert str(event["timestamp"]) == headers["X-Webhook-Timestamp"]
    assert {json.loads(r["body"])["id"] for r in receiver.requests} == {event["id"]}  # one event, three attempts
    job = event["job"]
    assert job["job_id"] == job_id and job["status"] == "completed"
    assert {out["format"]: out["status"] for out in job["outputs"]} == {"thumbnail": "completed", "mp3": "completed"}
    assert all(out["download_url"] for out in job["outputs"])
    state = marker(env, job_id)
    assert state["state"] == "delivered" and state["attempts"] == 3


def test_a_failed_job_is_reported_too_and_giving_up_is_recorded(env: Env, clip: Path) -> None:
    with Receiver(failures=99) as receiver:
        job_id = job_with_callback(env, clip, receiver.url, ["gif"])
        env.rt.jobs.save_failure(job_id, "Not media.")
        env.convert(job_id, "gif")
        outcomes = [env.outcome(Notify(job_id), n).action for n in range(1, webhooks.ATTEMPTS + 1)]
    assert outcomes == [Action.RETRY] * (webhooks.ATTEMPTS - 1) + [Action.ACK]
    assert len(receiver.requests) == webhooks.ATTEMPTS
    assert json.loads(receiver.requests[0]["body"])["job"]["status"] == "failed"
    assert json.loads(receiver.requests[0]["body"])["type"] == "job.failed"
    assert marker(env, job_id) == {**marker(env, job_id), "state": "failed", "result": "HTTP 500", "attempts": 4}


def test_a_deleted_job_drops_its_notice(env: Env, clip: Path) -> None:
    with Receiver() as receiver:
        job_id = job_with_callback(env, clip, receiver.url, ["thumbnail"])
        env.convert(job_id, "thumbnail")
        env.service.delete_job(job_id)
        assert env.outcome(Notify(job_id)).action is Action.ACK
    assert receiver.requests == []


def test_the_checked_address_is_the_one_connected_to(env: Env, clip: Path) -> None:
    """No DNS-rebinding gap: the host is resolved once per attempt, checked, and that address is used
    (the Host header keeps the name)."""
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        answers: list[str] = []

        def resolver(host: str, _: int) -> list[str]:
            answers.append(host)
            return ["127.0.0.1"]

        delivered, result = webhooks.deliver(
            f"http://hooks.example.test:{port}/x", b"{}", SECRET, allow_private=True, resolver=resolver
        )
    assert delivered and result == "HTTP 204" and answers == ["hooks.example.test"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example.test:{port}"


@pytest.mark.parametrize(
    ("url", "addresses", "allow"),
    [
        ("http://hooks.test/x", ["10.0.0.5"], False),  # private
        ("http://hooks.test/x", ["127.0.0.1"], False),  # loopback
        ("http://hooks.test/x", ["192.168.1.2", "93.184.216.34"], False),  # one private answer is enough
        ("http://hooks.test/x", ["169.254.169.254"], True),  # metadata: never, even when allowed
        ("http://hooks.test/x", ["fd00:ec2::254"], True),
        ("http://hooks.test/x", ["::ffff:10.0.0.1"], False),  # IPv4-mapped private
        ("http://hooks.test/x", ["100.64.0.1"], False),  # carrier-grade NAT
        ("ftp://hooks.test/x", ["93.184.216.34"], False),
        ("http://user:pw@hooks.test/x", ["93.184.216.34"], False),
    ],
)
def test_refused_urls(url: str, addresses: list[str], allow: bool) -> None:
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.check_url(url, allow_private=allow, resolver=lambda host, port: addresses)


def test_a_public_address_is_allowed() -> None:
    host, port, address = webhooks.check_url(
        "https://hooks.test/x", allow_private=False, resolver=lambda host, port: ["93.184.216.34"]
    )
    assert (host, port, address) == ("hooks.test", 443, "93.184.216.34")


def test_delivery_to_a_private_address_is_refused_without_retrying(make_env: MakeEnv, clip: Path) -> None:
    env = make_env(webhook_secret=SECRET, webhook_allow_private=True)
    job_id = job_with_callback(env, clip, "http://127.0.0.1:9/x", ["thumbnail"])  # allowed then
    env.convert(job_id, "thumbnail")
    env.rt.settings = env.rt.settings.model_copy(update={"webhook_allow_private": False})  # not any more
    assert env.outcome(Notify(job_id)).action is Action.ACK
    state = marker(env, job_id)
    assert state["state"] == "failed" and state["attempts"] == 1 and "private" in state["result"]


def test_the_api_refuses_a_private_callback_with_a_sentence(mem_runtime) -> None:
    with TestClient(create_app(mem_runtime)) as client:
        response = client.post(
            "/api/jobs",
            data={"formats": ["mp3"], "callback_url": "http://127.0.0.1:9/hook"},
            files={"file": ("a.mp4", b"data", "video/mp4")},
        )
        assert response.status_code == 422
        assert "private, loopback, link-local or metadata address" in response.json()["detail"]
        assert mem_runtime.uploads.objects == {}  # refused before the upload was stored
        ok = client.post(
            "/api/jobs",
            data={"formats": ["mp3"]},
            files={"file": ("a.mp4", b"data", "video/mp4")},
        )
        assert ok.status_code == 201


def test_webhooks_need_a_secret_on_aws(env: Env) -> None:
    env.rt.settings = env.rt.settings.model_copy(update={"backend": "aws", "webhook_secret": ""})
    env.rt.__dict__.pop("webhook_secret", None)
    with pytest.raises(InvalidRequest, match="WEBHOOK_SECRET"):
        env.service.check_callback("https://hooks.test/x")


def test_the_local_webhook_key_is_derived_from_the_signing_secret_under_its_own_label(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset, WEBHOOK_SECRET is HMAC-SHA256(signing secret, "video-converter webhook v1") in hex: never the
    URL-signing key itself, so a webhook signature is never a valid URL signature. The CLI prints it."""
    key = runtime.webhook_secret(settings)
    expected = hmac.new(b"test-secret", b"video-converter webhook v1", hashlib.sha256).hexdigest()
    assert key == expected and key != settings.secret_key
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    cli.main(["webhook-secret"])
    assert capsys.readouterr().out == key + "\n"
    assert runtime.webhook_secret(settings.model_copy(update={"webhook_secret": "set"})) == "set"
    aws = settings.model_copy(update={"backend": "aws"})
    monkeypatch.setattr(cli, "get_settings", lambda: aws)
    with pytest.raises(SystemExit, match="WEBHOOK_SECRET"):
        cli.main(["webhook-secret"])


def test_the_local_webhook_key_is_derived_from_the_generated_secret_too(settings: Settings) -> None:
    generated = settings.model_copy(update={"secret_key": ""})
    master = runtime.local_secret(generated)  # kept in DATA_DIR/secret.key
    key = runtime.webhook_secret(generated)
    assert key == hmac.new(master.encode(), runtime.WEBHOOK_KEY_LABEL, hashlib.sha256).hexdigest() != master


# IPv6 forms that carry an IPv4 address, judged by that address (Python's is_global says True for them).
EMBEDDED_PRIVATE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:7f00:1",  # IPv4-translated
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of the metadata address
    "2001:0:5db8:d822:0:f227:f5ff:fffe",  # Teredo: server 93.184.216.34, client 10.0.0.1
]


@pytest.mark.parametrize("address", EMBEDDED_PRIVATE)
def test_the_api_refuses_ipv6_forms_that_embed_a_private_ipv4(mem_runtime, address: str) -> None:
    with TestClient(create_app(mem_runtime)) as client:
        response = client.post(
            "/api/jobs",
            data={"formats": ["mp3"], "callback_url": f"http://[{address}]:8080/hook"},
            files={"file": ("a.mp4", b"data", "video/mp4")},
        )
    assert response.status_code == 422
    assert "private, loopback, link-local or metadata address" in response.json()["detail"]


def test_embedded_metadata_is_refused_even_when_private_addresses_are_allowed() -> None:
    for address in ("64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "::ffff:0:a9fe:a9fe"):

        def resolver(host: str, port: int, address: str = address) -> list[str]:
            return [address]

        with pytest.raises(webhooks.WebhookRefused):
            webhooks.check_url("http://hooks.test/x", allow_private=True, resolver=resolver)


def test_a_public_ipv4_embedded_in_nat64_is_judged_public() -> None:
    _, _, address = webhooks.check_url(
        "http://hooks.test/x", allow_private=False, resolver=lambda h, p: ["64:ff9b::5db8:d822"]
    )  # 93.184.216.34 through the NAT64 gateway
    assert address == "64:ff9b::5db8:d822"
    with pytest.raises(webhooks.WebhookRefused):  # a private client inside Teredo is enough
        webhooks.check_url("http://h.test/x", allow_private=False, resolver=lambda h, p: [EMBEDDED_PRIVATE[-1]])


class Hostile:
    """A raw TCP server on 127.0.0.1: each connection's request is read, ``connected`` is set, then
    ``answer(connection, sent)`` runs until it returns, the test ends (``stop``) or the client hangs up;
    ``sent`` counts the bytes written to the client."""

    def __init__(self, answer: Callable[[socket.socket, Hostile], None]) -> None:
        self.answer, self.stop, self.connected = answer, threading.Event(), threading.Event()
        self.sent, self.connections, self.done = 0, 0, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.connections += 1
            self.connected.set()
            with contextlib.suppress(OSError):  # the client hung up: what a bounded attempt does
                self.answer(conn, self)
            self.done.set()

    def write(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()


def drip(conn: socket.socket, server: Hostile) -> None:
    """A byte of the answer's head every 0.2 s, for ever: every read succeeds, none ends it."""
    while not server.stop.wait(0.2):
        server.write(conn, b"X" if server.sent > 20 else b"HTTP/1.1 200 OK\r\nX-Slow: "[server.sent : server.sent + 1])


def huge(conn: socket.socket, server: Hostile) -> None:
    """A 200 whose body claims a GiB and is written as fast as the client takes it."""
    server.write(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
    chunk = bytes(65536)
    while server.sent < 1 << 30 and not server.stop.is_set():
        server.write(conn, chunk)


def endless_head(conn: socket.socket, server: Hostile) -> None:
    """An answer's head that never ends: header lines as fast as the client takes them."""
    server.write(conn, b"HTTP/1.1 200 OK\r\n")
    while server.sent < 1 << 30 and not server.stop.is_set():
        server.write(conn, b"X-Pad: " + b"a" * 1000 + b"\r\n")


def test_two_dripping_receivers_do_not_delay_a_third_jobs_mp3(env: Env, clip: Path) -> None:
    """Two jobs' receivers drip their answers a byte at a time (so no per-read timeout ever fires) while
    both workers are on them; a third job's MP3 is still done within 15 s, because each attempt ends at
    its total deadline and its retry waits on the queue, not in the worker."""
    stop = threading.Event()
    with Hostile(drip) as first, Hostile(drip) as second:
        hooked = [job_with_callback(env, clip, receiver.url, ["thumbnail"]) for receiver in (first, second)]
        workers = [threading.Thread(target=Worker(env.rt, stop).run, daemon=True) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            assert first.connected.wait(60) and second.connected.wait(60)  # both workers are on a receiver
            started = time.monotonic()
            with clip.open("rb") as fh:
                third = env.service.upload_and_create(fh, "clip.mp4", ["mp3"]).job_id
            wait_for(lambda: env.status(third, "mp3").finished, "the third job's MP3", timeout=60)
            took = time.monotonic() - started
            assert env.status(third, "mp3") is OutputStatus.COMPLETED
            assert took < 15, f"the third job's MP3 took {took:.1f} s"
            # Each attempt ended by its deadline and went back to the queue for its retry.
            wait_for(lambda: all(marker(env, j)["state"] == "retrying" for j in hooked), "both attempts' end", 30)
        finally:
            first.stop.set()
            second.stop.set()
            stop.set()
            for worker in workers:
                worker.join(30)
    assert first.connections == second.connections == 1  # one attempt each; the retries wait 5 s


def test_a_huge_answer_is_not_read(env: Env) -> None:
    with Hostile(huge) as receiver:
        delivered, result = webhooks.deliver(receiver.url, b"{}", SECRET, allow_private=True)
        assert receiver.done.wait(30)  # the client hung up
    assert (delivered, result) == (True, "HTTP 200")
    # What the server managed to write is what the sockets' buffers hold, far from the GiB it offered.
    assert receiver.sent < 32 * 1024 * 1024, receiver.sent


def test_an_answer_head_that_never_ends_is_cut_off(env: Env) -> None:
    with Hostile(endless_head) as receiver:
        delivered, result = webhooks.deliver(receiver.url, b"{}", SECRET, allow_private=True)
        assert receiver.done.wait(30)
    assert not delivered and "longer than" in result
    assert receiver.sent < 32 * 1024 * 1024, receiver.sent


def test_a_dripping_answer_ends_at_the_attempts_deadline(env: Env) -> None:
    with Hostile(drip) as receiver:
        started = time.monotonic()
        delivered, result = webhooks.deliver(receiver.url, b"{}", SECRET, allow_private=True, timeout=1.5)
        took = time.monotonic() - started
    assert (delivered, result) == (False, "Timeout: no whole answer within 1.5 s")
    assert 1.4 < took < 3, took


def test_a_refused_connection_costs_one_quick_attempt(env: Env, clip: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # closed below: nothing listens there
    job_id = job_with_callback(env, clip, f"http://127.0.0.1:{port}/hook", ["thumbnail"])
    assert env.convert(job_id, "thumbnail").final  # queues the notice, calls no one
    started = time.monotonic()
    outcome = env.outcome(Notify(job_id))
    took = time.monotonic() - started
    assert outcome.action is Action.RETRY and outcome.delay == 5  # the queue waits, not the worker
    assert took < 2, took
    state = marker(env, job_id)
    assert state["state"] == "retrying" and state["result"].startswith("ConnectError")


def test_a_redirect_is_not_followed(env: Env) -> None:
    def redirect(conn: socket.socket, server: Hostile) -> None:
        server.write(conn, b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")

    with Hostile(redirect) as receiver:
        assert webhooks.deliver(receiver.url, b"{}", SECRET, allow_private=True) == (False, "HTTP 302")
    assert receiver.connections == 1


def test_https_goes_to_the_checked_address_with_the_urls_name_and_checks_the_certificate(tmp_path: Path) -> None:
    """The TLS server name is the URL's host though the connection goes to the checked address; a
    certificate no authority signed is refused (a self-signed one here)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.example.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = sni
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        threading.Thread(target=serve, daemon=True).start()
        delivered, result = webhooks.deliver(
            f"https://hooks.example.test:{port}/x",
            b"{}",
            SECRET,
            allow_private=True,
            resolver=lambda h, p: ["127.0.0.1"],
        )
    assert not delivered and result.startswith("ConnectError") and "CERTIFICATE_VERIFY_FAILED" in result
    assert names == ["hooks.example.test"]


def test_a_notice_the_local_queue_lost_is_sent_again(settings: Settings) -> None:
    """The queue file is state that can be lost: a marker still waiting for its delivery, past the grace
    of a notice being queued right now, with no notice on the queue, is queued again (once)."""
    rt = runtime.build_runtime(settings.model_copy(update={"webhook_secret": SECRET, "webhook_allow_private": True}))
    try:
        rt.probe_uploads = False
        fresh, old = (
            JobService(rt).upload_and_create(io.BytesIO(b"x"), "a.mp4", ["gif"], "http://127.0.0.1:9/").job_id
            for _ in range(2)
        )
        while (message := rt.queue.receive()) is not None:  # their outputs' messages: not what is looked at
            rt.queue.ack(message)
        long_ago = (utcnow() - QUEUED_GRACE - timedelta(seconds=1)).isoformat()
        rt.converted.put_bytes(keys.webhook_key(old), json.dumps({"state": "retrying", "at": long_ago}).encode())
        rt.converted.put_bytes(
            keys.webhook_key(fresh), json.dumps({"state": "queued", "at": utcnow().isoformat()}).encode()
        )
        assert reconcile(rt) == 1
        assert isinstance(rt.queue, SqliteQueue)
        assert rt.queue.bodies() == [to_body(Notify(old))]
        assert reconcile(rt) == 0  # it is on the queue now
    finally:
        rt.close()
