"""Webhooks against a local receiver: signed job JSON when the job ends, retries with back-off, once per
job, and refused private, loopback, link-local and metadata addresses."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import Env, MakeEnv
from video_converter import cli, keys, runtime, webhooks
from video_converter.config import Settings
from video_converter.errors import InvalidRequest
from video_converter.outcome import Action

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
def env(make_env: MakeEnv, monkeypatch) -> Env:
    monkeypatch.setattr(webhooks, "DELAYS", (0.05, 0.1, 0.2))
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
    signature = webhooks.sign(SECRET, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert webhooks.verify(SECRET, body, signature)
    assert not webhooks.verify(SECRET, body + b" ", signature)
    assert not webhooks.verify("other", body, signature)


def test_the_last_output_sends_the_signed_job_once_after_retries(env: Env, clip: Path) -> None:
    with Receiver(failures=2) as receiver:
        job_id = job_with_callback(env, clip, receiver.url, ["thumbnail", "mp3"])
        assert env.convert(job_id, "thumbnail").action is Action.ACK
        assert receiver.requests == []  # mp3 is not final yet
        assert env.convert(job_id, "mp3").action is Action.ACK
        assert len(receiver.requests) == 3  # two 500s, then delivered
        env.convert(job_id, "mp3")  # a redelivery of finished work sends nothing more
        assert len(receiver.requests) == 3
    last = receiver.requests[-1]
    assert last["path"] == "/hooks/video?token=abc"
    assert last["headers"]["Content-Type"] == "application/json"
    # What a receiver does: HMAC-SHA256 of the raw body under the shared secret, compared in constant time.
    assert webhooks.verify(SECRET, last["body"], last["headers"]["X-Signature"])
    job = json.loads(last["body"])
    assert job["job_id"] == job_id and job["status"] == "completed"
    assert {out["format"]: out["status"] for out in job["outputs"]} == {"thumbnail": "completed", "mp3": "completed"}
    assert all(out["download_url"] for out in job["outputs"])
    marker = json.loads(env.converted.get_bytes(keys.webhook_key(job_id)))
    assert marker["state"] == "delivered" and marker["attempts"] == 3


def test_a_failed_job_is_reported_too_and_giving_up_is_recorded(env: Env, clip: Path) -> None:
    with Receiver(failures=99) as receiver:
        job_id = job_with_callback(env, clip, receiver.url, ["gif"])
        env.rt.jobs.save_failure(job_id, "Not media.")
        env.convert(job_id, "gif")
    assert len(receiver.requests) == 1 + len(webhooks.DELAYS)
    assert json.loads(receiver.requests[0]["body"])["status"] == "failed"
    marker = json.loads(env.converted.get_bytes(keys.webhook_key(job_id)))
    assert marker == {**marker, "state": "failed", "result": "HTTP 500"}


def test_the_checked_address_is_the_one_connected_to(env: Env, clip: Path) -> None:
    """No DNS-rebinding gap: the host is resolved once per attempt, checked, and that address is used
    (the Host header keeps the name)."""
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        answers: list[str] = []

        def resolver(host: str, _: int) -> list[str]:
            answers.append(host)
            return ["127.0.0.1"]

        delivered, attempts, _ = webhooks.deliver(
            f"http://hooks.example.test:{port}/x", b"{}", SECRET, allow_private=True, resolver=resolver
        )
    assert delivered and attempts == 1 and answers == ["hooks.example.test"]
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


def test_delivery_to_a_private_address_is_refused_without_retrying() -> None:
    delivered, attempts, result = webhooks.deliver(
        "http://hooks.test/x", b"{}", SECRET, allow_private=False, resolver=lambda h, p: ["10.1.2.3"]
    )
    assert (delivered, attempts) == (False, 1) and "private" in result


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
        with pytest.raises(webhooks.WebhookRefused):
            webhooks.check_url("http://hooks.test/x", allow_private=True, resolver=lambda h, p, a=address: [a])


def test_a_public_ipv4_embedded_in_nat64_is_judged_public() -> None:
    _, _, address = webhooks.check_url(
        "http://hooks.test/x", allow_private=False, resolver=lambda h, p: ["64:ff9b::5db8:d822"]
    )  # 93.184.216.34 through the NAT64 gateway
    assert address == "64:ff9b::5db8:d822"
    with pytest.raises(webhooks.WebhookRefused):  # a private client inside Teredo is enough
        webhooks.check_url("http://h.test/x", allow_private=False, resolver=lambda h, p: [EMBEDDED_PRIVATE[-1]])
