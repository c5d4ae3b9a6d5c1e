"""Owners: API keys (store, CLI), sessions, share tokens, CSRF, and the owner checks of every job route,
through FastAPI's TestClient over in-memory stores (the real server and moto: tests/e2e, tests/aws)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import MemoryParts, make_clip_file, memory_runtime
from tests.ownership import assert_looks_unknown
from video_converter import cli, ownerindex
from video_converter import keys as keys_module
from video_converter.apikeys import ApiKey, KeyStore, record_key
from video_converter.auth import SESSION_COOKIE, Sessions
from video_converter.config import Settings
from video_converter.owners import AuthMode, Owner, OwnerKind
from video_converter.runtime import Runtime
from video_converter.shares import ShareTokens
from video_converter.storage import MemoryStorage

UNKNOWN = "No such job (or format) here; check the link."


# --- the key store ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_stored_only_as_its_hash_and_checked_in_one_read() -> None:
    store = MemoryStorage()
    keys = KeyStore(store)
    record, key = keys.create("Alice's app", max_concurrent_jobs=3, max_source_minutes_per_day=90)
    assert key.startswith(f"vck_{record.key_id}_")
    (stored,) = store.objects.values()
    assert key.encode() not in stored and key.split("_", 2)[2].encode() not in stored
    assert json.loads(stored)["sha256"] == record.sha256
    owner = keys.authenticate(key)
    assert owner is not None
    assert owner == Owner(id=f"key:{record.key_id}", kind=OwnerKind.KEY, name="Alice's app", quota=owner.quota)
    assert (owner.quota.active_jobs, owner.quota.source_minutes_per_day, owner.quota.storage_bytes) == (3, 90, None)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        lambda key: "vck_AAAAAAAAAAAA_" + key.split("_", 2)[2],  # unknown id
        lambda key: key + "x",  # malformed
        lambda key: "",
        lambda key: "Bearer " + key,
    ],
)
def test_anything_but_the_exact_key_is_refused(mangle) -> None:
    keys = KeyStore(MemoryStorage())
    _, key = keys.create("a")
    assert keys.authenticate(mangle(key)) is None


def test_a_revocation_reaches_other_processes_within_the_cache_time() -> None:
    store, clock = MemoryStorage(), Clock()
    cli_side = KeyStore(store)
    api_side = KeyStore(store, cache_seconds=5, clock=clock)
    record, key = cli_side.create("a")
    assert api_side.authenticate(key) is not None
    cli_side.revoke(record.key_id)
    clock.now += 4.9
    assert api_side.authenticate(key) is not None  # still cached
    clock.now += 0.2
    assert api_side.authenticate(key) is None
    assert [k.revoked for k in cli_side.list()] == [True]


def test_the_cli_prints_a_new_key_alone_on_the_last_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(_env_file=None))
    cli.main(["keys", "create", "--name", "ci", "--max-concurrent-jobs", "2"])
    out = capsys.readouterr().out.splitlines()
    key = out[-1]
    assert key.startswith("vck_") and key == key.strip() and " " not in key
    assert key not in "\n".join(out[:-1])
    (record,) = KeyStore(settings_store(settings)).list()
    assert record.max_concurrent_jobs == 2 and key.split("_")[1] == record.key_id

    cli.main(["keys", "list"])
    listed = capsys.readouterr().out
    assert record.key_id in listed and "active" in listed and key not in listed
    cli.main(["keys", "revoke", record.key_id])
    assert "Revoked" in capsys.readouterr().out
    assert KeyStore(settings_store(settings)).authenticate(key) is None
    with pytest.raises(SystemExit, match="no API key"):
        cli.main(["keys", "revoke", "AAAAAAAAAAAA"])


def settings_store(settings: Settings):
    from video_converter.storage import LocalStorage

    return LocalStorage(Path(settings.data_dir) / "converted")


# --- sessions and share tokens ----------------------------------------------------------------------


def test_session_cookies_are_signed() -> None:
    sessions = Sessions(b"secret")
    session_id, cookie = sessions.new()
    assert sessions.open(cookie) == session_id
    assert sessions.open(cookie[:-1] + ("A" if cookie[-1] != "A" else "B")) is None
    assert Sessions(b"other").open(cookie) is None
    assert sessions.open(f"{'x' * 24}.{cookie.split('.')[1]}") is None


def test_a_share_token_hides_the_job_id_and_expires() -> None:
    tokens = ShareTokens(b"secret")
    job_id = str(uuid.uuid4())
    token = tokens.issue(job_id, expires_at=2000)
    assert job_id not in token and job_id.replace("-", "") not in token
    share = tokens.open(token, now=1999)
    assert share is not None and (share.job_id, share.expires_at) == (job_id, 2000)
    assert tokens.open(token, now=2000) is None
    assert ShareTokens(b"other").open(token, now=0) is None
    for i in range(len(token)):  # any one character changed
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert tokens.open(changed, now=0) is None or changed == token


# --- over HTTP (memory stores) ----------------------------------------------------------------------


@pytest.fixture
def keyed(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, KeyStore]]:
    rt = memory_runtime(settings.model_copy(update={"auth": AuthMode.KEYS}), tmp_path / "scratch")
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        yield client, rt, KeyStore(rt.converted)
    rt.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_job(client: TestClient, headers: dict[str, str], clip: Path, formats: str = "mp3") -> str:
    response = client.post(
        "/api/jobs", headers=headers, files={"file": ("clip.mp4", clip.read_bytes())}, data={"formats": formats}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["job_id"])


def test_keys_mode_needs_a_key_on_every_api_route(keyed, tmp_path: Path) -> None:
    client, _, _ = keyed
    job = str(uuid.uuid4())
    for method, path in [
        ("GET", "/api/formats"),
        ("GET", "/api/jobs"),
        ("POST", "/api/jobs"),
        ("POST", "/api/uploads"),
        ("GET", f"/api/jobs/{job}"),
        ("DELETE", f"/api/jobs/{job}"),
        ("POST", f"/api/jobs/{job}/share"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["detail"].startswith("This service needs an API key")
        assert response.headers["www-authenticate"].startswith("Bearer")
    bad = client.get("/api/jobs", headers=bearer("vck_nope"))
    assert bad.status_code == 401 and "not valid" in bad.json()["detail"]
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_another_keys_job_answers_as_an_unknown_one_on_every_route(keyed, tmp_path: Path) -> None:
    client, rt, keys = keyed
    _, alice = keys.create("alice")
    _, bob = keys.create("bob")
    clip = make_clip_file(tmp_path / "clip.mp4", seconds=0.5, size="64x48")
    job_id = make_job(client, bearer(alice), clip)
    assert client.get(f"/api/jobs/{job_id}", headers=bearer(alice)).status_code == 200
    bob_client = TestClient(client.app, headers=bearer(bob))
    assert_looks_unknown(bob_client, job_id)
    assert client.get("/api/jobs", headers=bearer(bob)).json() == {"jobs": [], "next_cursor": None}
    assert [j["job_id"] for j in client.get("/api/jobs", headers=bearer(alice)).json()["jobs"]] == [job_id]
    assert rt.jobs.exists(job_id)  # bob's delete did nothing

    # Bob cannot make a job of Alice's upload ticket either: it answers as an unknown upload.
    ticket = client.post("/api/uploads", headers=bearer(alice)).json()
    rt.uploads.put_bytes(keys_module.source_key(ticket["upload_id"]), clip.read_bytes())  # the browser's upload
    body = {"upload_id": ticket["upload_id"], "filename": "c.mp4", "formats": ["mp3"]}
    theirs = client.post("/api/jobs", headers=bearer(bob), json=body)
    nobody = client.post("/api/jobs", headers=bearer(bob), json={**body, "upload_id": str(uuid.uuid4())})
    assert theirs.status_code == nobody.status_code == 422 and theirs.json() == nobody.json()
    assert client.post("/api/jobs", headers=bearer(alice), json=body).status_code == 201


def test_the_job_list_pages_newest_first_and_forgets_deleted_jobs(keyed, tmp_path: Path) -> None:
    client, rt, keys = keyed
    _, key = keys.create("a")
    clip = make_clip_file(tmp_path / "clip.mp4", seconds=0.5, size="64x48")
    made = [make_job(client, bearer(key), clip) for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = client.get(
            "/api/jobs", headers=bearer(key), params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200
        seen += [j["job_id"] for j in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    assert client.delete(f"/api/jobs/{made[0]}", headers=bearer(key)).status_code == 204
    rt.jobs.delete_job(made[1])  # as if it expired: the list drops its entry when it meets it
    listed = [j["job_id"] for j in client.get("/api/jobs", headers=bearer(key)).json()["jobs"]]
    assert listed == made[:1:-1]
    owner_id = f"key:{key.split('_')[1]}"
    index = [k for k in MemoryParts(rt).converted.objects if k.startswith(ownerindex.owner_folder(owner_id))]
    assert len(index) == 3
    assert not [k for k in index if made[0] in k or made[1] in k]
    bad = client.get("/api/jobs", headers=bearer(key), params={"cursor": "../x"})
    assert bad.status_code == 422


def test_a_share_link_shows_and_downloads_but_cannot_delete(keyed, tmp_path: Path) -> None:
    client, _, keys = keyed
    _, key = keys.create("a")
    clip = make_clip_file(tmp_path / "clip.mp4", seconds=0.5, size="64x48")
    job_id = make_job(client, bearer(key), clip)
    link = client.post(f"/api/jobs/{job_id}/share", headers=bearer(key))
    assert link.status_code == 201
    api_path = urlsplit(link.json()["api_url"]).path
    page_path = urlsplit(link.json()["url"]).path
    assert client.get(api_path).json()["job_id"] == job_id
    page = client.get(page_path)
    assert page.status_code == 200 and 'id="job-delete"' not in page.text and 'id="job-share"' not in page.text
    assert client.delete(api_path).status_code == 405
    assert client.post(f"{api_path}/share").status_code in (404, 405)
    assert client.get(f"{api_path}/outputs/mp3").status_code == 409  # not converted here (no worker)
    assert client.delete(f"/api/jobs/{job_id}", headers=bearer(key)).status_code == 204
    assert client.get(api_path).status_code == 404
    assert client.get(page_path).status_code == 200  # the page then says the link is dead


def test_a_share_link_never_outlives_the_retention(keyed, tmp_path: Path) -> None:
    client, _, keys = keyed
    _, key = keys.create("a")
    job_id = make_job(client, bearer(key), make_clip_file(tmp_path / "clip.mp4", seconds=0.5, size="64x48"))
    long = client.post(f"/api/jobs/{job_id}/share", headers=bearer(key), json={"expires_in": 365 * 86400}).json()
    short = client.post(f"/api/jobs/{job_id}/share", headers=bearer(key), json={"expires_in": 60}).json()
    default = client.post(f"/api/jobs/{job_id}/share", headers=bearer(key)).json()
    assert long["expires_at"] == default["expires_at"] or long["expires_at"] <= default["expires_at"]
    assert short["expires_at"] < default["expires_at"]


@pytest.fixture
def anonymous(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, KeyStore]]:
    rt = memory_runtime(settings.model_copy(update={"auth": AuthMode.KEYS, "anonymous": True}), tmp_path / "s")
    app = create_app(rt)
    with TestClient(app) as first, TestClient(app) as second:
        yield first, second, KeyStore(rt.converted)
    rt.close()


def test_anonymous_sessions_are_owners_of_their_own(anonymous, tmp_path: Path) -> None:
    first, second, keys = anonymous
    clip = make_clip_file(tmp_path / "clip.mp4", seconds=0.5, size="64x48")
    created = first.post("/api/jobs", files={"file": ("clip.mp4", clip.read_bytes())}, data={"formats": "mp3"})
    assert created.status_code == 201
    cookie = created.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here; behind HTTPS it is Secure
    job_id = created.json()["job_id"]
    assert first.get(f"/api/jobs/{job_id}").status_code == 200
    assert first.get("/api/jobs").json()["jobs"][0]["job_id"] == job_id
    assert second.get(f"/api/jobs/{job_id}").status_code == 404
    assert second.get("/api/jobs").json()["jobs"] == []
    assert second.delete(f"/api/jobs/{job_id}").status_code == 404
    _, key = keys.create("k")
    assert first.get(f"/api/jobs/{job_id}", headers=bearer(key)).status_code == 404  # a key is its own owner


def test_a_cross_site_request_with_the_cookie_is_refused_and_a_bearer_one_is_not(anonymous, tmp_path: Path) -> None:
    first, _, keys = anonymous
    first.get("/api/jobs")  # the session cookie
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    refused = first.post("/api/uploads", headers=evil)
    assert refused.status_code == 403 and "Cross-site" in refused.json()["detail"]
    assert first.post("/api/uploads", headers={"Origin": "https://evil.example"}).status_code == 403
    assert first.post("/api/uploads", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 201
    assert first.post("/api/uploads", headers={"Origin": "http://testserver"}).status_code == 201
    _, key = keys.create("k")
    assert first.post("/api/uploads", headers={**evil, **bearer(key)}).status_code == 201


def test_auth_none_lists_every_job(client_none: TestClient, tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "clip.mp4", seconds=0.5, size="64x48")
    made = [make_job(client_none, {}, clip) for _ in range(2)]
    assert [j["job_id"] for j in client_none.get("/api/jobs").json()["jobs"]] == made[::-1]
    assert "set-cookie" not in client_none.get("/api/jobs").headers


@pytest.fixture
def client_none(mem_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(mem_runtime)) as client:
        yield client


def test_a_key_record_keeps_its_limits() -> None:
    record = ApiKey(key_id="A" * 12, name="n", sha256="0" * 64, max_concurrent_jobs=1)
    assert record_key(record.key_id) == "identity/keys/AAAAAAAAAAAA.json"
    assert record.owner().quota.active_jobs == 1 and record.owner().quota.source_minutes_per_day is None


def test_the_session_cookie_is_secure_behind_https(anonymous) -> None:
    first, _, _ = anonymous
    secure = TestClient(first.app, base_url="https://converter.example")
    cookie = secure.get("/api/jobs").headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_the_access_log_keeps_no_share_token() -> None:
    from video_converter.logsafe import redact_target

    assert redact_target("/share/abcDEF-_1") == "/share/[redacted]"
    assert redact_target("/api/share/abcDEF-_1/outputs/mp3") == "/api/share/[redacted]/outputs/mp3"
    assert redact_target("/api/jobs/x/share") == "/api/jobs/x/share"
