"""The Storage contract over LocalStorage, MemoryStorage and S3Storage (moto, in-process), and LocalStorage's
own (atomic, confined to its root, signed URLs); S3's own is in tests/aws/test_s3_storage.py."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from tests.aws.conftest import UPLOAD_BUCKET, use_fake_credentials
from video_converter.signing import Signer
from video_converter.storage import ByteRange, LocalStorage, MemoryStorage, ObjectNotFound, Storage, validate_key
from video_converter.storage.base import CHUNK
from video_converter.storage.s3 import PART_SIZE, S3Storage


class CountingStream(io.RawIOBase):
    """Yields ``total`` bytes in reads of at most the requested size (read n is bytes of value n % 256);
    optionally raises after N reads. Remembers the largest read asked of it and what it gave."""

    def __init__(self, total: int, fail_after_reads: int | None = None) -> None:
        self.total, self.sent, self.reads, self.largest_read = total, 0, 0, 0
        self.fail_after_reads = fail_after_reads
        self.given = bytearray()

    def read(self, size: int = -1) -> bytes:
        if self.fail_after_reads is not None and self.reads >= self.fail_after_reads:
            raise ConnectionResetError("client went away")
        self.reads += 1
        self.largest_read = max(self.largest_read, size if size >= 0 else self.total)
        n = self.total - self.sent if size < 0 else min(size, self.total - self.sent)
        self.sent += n
        data = bytes([self.reads % 256]) * n
        self.given += data
        return data


def read_size(store: Storage) -> int:
    """How much of a stream a store reads at a time: a chunk, or for S3 a part of a multipart upload."""
    return PART_SIZE if isinstance(store, S3Storage) else CHUNK


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.aws)])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Storage]:
    """Each implementation of the Storage protocol: on disk, in memory, and S3 (moto, in-process, as
    tests/aws sets it up)."""
    if request.param == "local":
        yield LocalStorage(tmp_path / "store", signer=Signer("k"), url_prefix="/files/converted")
    elif request.param == "memory":
        yield MemoryStorage()
    else:
        use_fake_credentials(monkeypatch, tmp_path)
        with mock_aws():
            boto3.client("s3").create_bucket(Bucket=UPLOAD_BUCKET)
            yield S3Storage(UPLOAD_BUCKET)


def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store", signer=Signer("k"), url_prefix="/files/converted/")


# --- contract, every implementation ------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(store: Storage) -> None:
    store.put_bytes("job/status/720p.json", b'{"a": 1}', "application/json")
    assert store.get_bytes("job/status/720p.json") == b'{"a": 1}'
    assert store.size("job/status/720p.json") == 8
    store.put_bytes("job/status/720p.json", b"{}")
    assert store.get_bytes("job/status/720p.json") == b"{}"


def test_create_bytes_only_creates(store: Storage) -> None:
    assert store.create_bytes("job/job.json", b"first", "application/json") is True
    assert store.create_bytes("job/job.json", b"second") is False
    assert store.get_bytes("job/job.json") == b"first"
    store.delete("job/job.json")
    assert store.create_bytes("job/job.json", b"third") is True  # absent again
    assert store.get_bytes("job/job.json") == b"third"


def test_create_bytes_does_not_replace_what_put_bytes_wrote(store: Storage) -> None:
    store.put_bytes("job/job.json", b"seeded")
    assert store.create_bytes("job/job.json", b"other") is False
    assert store.get_bytes("job/job.json") == b"seeded"


# Not S3 under moto: moto checks If-None-Match and stores the key in separate steps, without a lock; S3's
# own atomic answer is checked in tests/aws/test_s3_storage.py.
@pytest.mark.parametrize("store", ["local", "memory"], indirect=True)
def test_create_bytes_concurrently_has_exactly_one_winner(store: Storage) -> None:
    start = threading.Barrier(20)

    def create(n: int) -> bool:
        start.wait()  # all 20 at once
        return store.create_bytes("race/job.json", str(n).encode())

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    assert results.count(True) == 1
    assert store.get_bytes("race/job.json") == str(results.index(True)).encode()


def test_missing_object(store: Storage, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope/x")
    assert store.size("nope/x") is None
    store.delete("nope/x")  # deleting nothing is fine
    store.delete("nope/x")  # ... again too
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ObjectNotFound), store.local_path("nope/x", work):
        pass
    assert list(work.iterdir()) == []  # and leaves nothing behind


def test_put_stream_streams_in_chunks_and_returns_size(store: Storage) -> None:
    step = read_size(store)
    total = max(5 * CHUNK, 2 * step) + 17  # S3: a multipart upload of three parts
    stream = CountingStream(total)
    assert store.put_stream("big/source", stream) == total
    assert store.size("big/source") == total
    assert stream.largest_read <= step and stream.reads >= total // step + 1  # chunk by chunk, never in one go
    assert store.get_bytes("big/source") == stream.given  # in the order read


def test_put_small_and_empty_streams(store: Storage) -> None:
    assert store.put_stream("a/small", io.BytesIO(b"hello")) == 5
    assert store.get_bytes("a/small") == b"hello"
    assert store.put_stream("e/source", io.BytesIO(b"")) == 0
    assert store.size("e/source") == 0


def test_put_file_and_local_path(store: Storage, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(b"hello" * 1000)
    store.put_file("j/out.mp4", src, "video/mp4")
    work = tmp_path / "work"
    work.mkdir()
    with store.local_path("j/out.mp4", work) as path:
        assert path.read_bytes() == b"hello" * 1000


def test_delete(store: Storage) -> None:
    store.put_bytes("j/x", b"1")
    store.delete("j/x")
    assert store.size("j/x") is None


BAD_KEYS = [
    "../x",
    "/abs",
    "a/../b",
    "a/../../b",
    "a//b",
    "a/./b",
    "",
    ".",
    "..",
    "a/",
    ".hidden",
    "a\\b",
    "a b",
    "x" * 513,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_raise_value_error(store: Storage, key: str) -> None:
    for op in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.create_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.size(key),
        lambda: store.delete(key),
        lambda: store.put_stream(key, io.BytesIO(b"x")),
        lambda: store.download_url(key, "x.mp4", "video/mp4", 60),
        lambda: store.upload_form(key, 10, 60),
    ):
        with pytest.raises(ValueError, match="Invalid object key"):
            op()


@pytest.mark.parametrize("key", ["abc", "a/b/c.json", "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11/clip_720p.mp4", "A-z_.9"])
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


def test_key_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValueError):
        validate_key("abc\n")


# --- LocalStorage specifics ----------------------------------------------------------------------


def test_local_atomic_write_leaves_nothing_when_stream_fails(tmp_path: Path) -> None:
    s = local(tmp_path)
    stream = CountingStream(3 * CHUNK, fail_after_reads=1)
    with pytest.raises(ConnectionResetError):
        s.put_stream("job/source", stream)
    assert stream.reads == 1  # the first chunk was written before the failure
    assert s.size("job/source") is None
    assert not (s.root / "job" / "source").exists()
    assert list((s.root / "job").iterdir()) == []  # no .part leftovers


def test_local_failed_overwrite_keeps_old_version(tmp_path: Path) -> None:
    s = local(tmp_path)
    s.put_bytes("job/source", b"old")
    with pytest.raises(ConnectionResetError):
        s.put_stream("job/source", CountingStream(3 * CHUNK, fail_after_reads=2))
    assert s.get_bytes("job/source") == b"old"
    assert [p.name for p in (s.root / "job").iterdir()] == ["source"]


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    s = local(tmp_path)
    s.put_bytes("j/a.json", b"{}")
    s.put_stream("j/b", io.BytesIO(b"x" * 10))
    src = tmp_path / "f"
    src.write_bytes(b"y")
    s.put_file("j/c", src)
    assert s.create_bytes("j/d", b"1") and not s.create_bytes("j/d", b"2")
    assert sorted(p.name for p in (s.root / "j").iterdir()) == ["a.json", "b", "c", "d"]


def test_local_path_is_the_file_itself_and_inside_root(tmp_path: Path) -> None:
    s = local(tmp_path)
    s.put_bytes("j/x", b"1")
    with s.local_path("j/x", tmp_path) as path:
        assert path == s.root / "j" / "x"
    assert s.path("a/b").is_relative_to(s.root)


def test_local_symlink_escape_is_refused(tmp_path: Path) -> None:
    s = local(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (s.root / "link").symlink_to(outside)
    with pytest.raises(ValueError):
        s.get_bytes("link/secret")


def _query(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    return split.path, {k: v[0] for k, v in parse_qs(split.query).items()}


def test_local_download_url_is_signed(tmp_path: Path) -> None:
    s = local(tmp_path)
    url = s.download_url("j/clip_720p.mp4", "clip_720p.mp4", "video/mp4", 60)
    path, q = _query(url)
    assert path == "/files/converted/j/clip_720p.mp4"
    assert q["filename"] == "clip_720p.mp4"
    assert s.verify("j/clip_720p.mp4", q["expires"], q["signature"], filename="clip_720p.mp4")
    assert not s.verify("j/clip_720p.mp4", q["expires"], q["signature"], filename="other.mp4")
    assert not s.verify("j/other.mp4", q["expires"], q["signature"], filename="clip_720p.mp4")
    assert not s.verify("../j/clip_720p.mp4", q["expires"], q["signature"], filename="clip_720p.mp4")
    assert not s.verify("j/clip_720p.mp4", q["expires"], q["signature"])


def test_local_download_url_expires(tmp_path: Path) -> None:
    s = local(tmp_path)
    _, q = _query(s.download_url("j/x", "x.mp4", "video/mp4", -5))
    assert not s.verify("j/x", q["expires"], q["signature"], filename="x.mp4")


def test_local_upload_form_signs_max_bytes(tmp_path: Path) -> None:
    s = local(tmp_path)
    url, fields = s.upload_form("u/source", 1000, 60)
    path, q = _query(url)
    assert fields == {}
    assert path == "/files/converted/u/source"
    assert q["max_bytes"] == "1000"
    assert s.verify("u/source", q["expires"], q["signature"], max_bytes="1000")
    assert not s.verify("u/source", q["expires"], q["signature"], max_bytes="999999")


def test_local_without_signer_cannot_hand_out_urls(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path / "s")
    with pytest.raises(RuntimeError):
        s.download_url("a/b", "b", "video/mp4", 60)
    with pytest.raises(RuntimeError):
        s.upload_form("a/b", 1, 60)
    assert not s.verify("a/b", "9999999999", "x")


def test_other_store_with_same_secret_but_other_prefix_rejects(tmp_path: Path) -> None:
    signer = Signer("k")
    converted = LocalStorage(tmp_path / "c", signer=signer, url_prefix="/files/converted")
    uploads = LocalStorage(tmp_path / "u", signer=signer, url_prefix="/files/uploads")
    _, q = _query(converted.download_url("j/x", "x", "video/mp4", 60))
    assert not uploads.verify("j/x", q["expires"], q["signature"], filename="x")


def test_memory_urls_name_the_key() -> None:
    s = MemoryStorage()
    assert s.download_url("j/x.mp4", "x 1.mp4", "video/mp4", 60).startswith("memory://j/x.mp4?filename=x%201.mp4")
    url, fields = s.upload_form("u/source", 10, 60)
    assert url == "memory://u/source" and fields == {"max_bytes": "10"}


StoreFactory = Callable[[], Storage]


# --- delete_prefix, open_read and list: contract, every implementation ---


def test_delete_prefix_removes_the_folder_only(store: Storage) -> None:
    for key in ("job1/job.json", "job1/status/720p.json", "job1/clip_720p.mp4", "job10/job.json", "job2/x"):
        store.put_bytes(key, b"x")
    assert store.delete_prefix("job1") == 3
    assert [store.size(k) for k in ("job1/job.json", "job1/status/720p.json", "job1/clip_720p.mp4")] == [None] * 3
    assert store.size("job10/job.json") == 1 and store.size("job2/x") == 1  # a longer id is not a child
    assert store.delete_prefix("job1/") == 0  # nothing left: fine
    store.put_bytes("job1/job.json", b"again")  # the folder can be written again afterwards
    assert store.get_bytes("job1/job.json") == b"again"


@pytest.mark.parametrize("prefix", ["", "/", "..", "../x", "a/../b"])
def test_delete_prefix_refuses_what_is_not_a_folder_key(store: Storage, prefix: str) -> None:
    store.put_bytes("keep/x", b"x")
    with pytest.raises(ValueError):
        store.delete_prefix(prefix)
    assert store.size("keep/x") == 1


def test_open_read_streams_in_chunks(store: Storage) -> None:
    written = CountingStream(3 * CHUNK + 5)
    store.put_stream("big/out.mp4", written)
    with store.open_read("big/out.mp4") as stream:
        chunks = []
        while chunk := stream.read(CHUNK):
            chunks.append(chunk)
    assert [len(chunk) for chunk in chunks] == [CHUNK, CHUNK, CHUNK, 5]
    assert b"".join(chunks) == written.given
    with pytest.raises(ObjectNotFound), store.open_read("big/missing.mp4"):
        pass


def test_list_names_what_is_under_a_prefix(store: Storage) -> None:
    store.put_bytes("job/segments/720p/0001.nut", b"a" * 3)
    store.put_bytes("job/segments/720p/0000.nut", b"b")
    store.put_bytes("job/segments/7200/0000.nut", b"not under the prefix")
    store.put_bytes("job/status/720p.json", b"{}")
    listed = store.list("job/segments/720p/")
    assert [(item.key, item.size) for item in listed] == [
        ("job/segments/720p/0000.nut", 1),
        ("job/segments/720p/0001.nut", 3),
    ]
    assert all(abs(item.modified - time.time()) < 60 for item in listed)
    assert store.list("job/nothing/") == []
    with pytest.raises(ValueError):
        store.list("job/segments")  # a prefix is a folder
    with pytest.raises(ValueError):
        store.list("../")


def test_folders_are_listed_as_s3_lists_them(tmp_path):
    from video_converter.storage import LocalStorage, MemoryStorage

    for store in (MemoryStorage(), LocalStorage(tmp_path / "store")):
        for key in ("a/job.json", "a/status/x.json", "b/job.json", "b.c/x", "c/job.json"):
            store.put_bytes(key, b"{}")
        assert store.folders() == ["a", "b.c", "b", "c"]  # in key order: "b.c/" before "b/"
        assert store.folders(limit=2) == ["a", "b.c"]
        assert store.folders("b.c", limit=2) == ["b", "c"]


# --- ranges and objects composed by copy, every implementation ---------------------------------------

MiB = 1024 * 1024


def test_read_range_reads_only_what_is_asked(store: Storage) -> None:
    store.put_bytes("job/segments/a.mp4", bytes(range(256)) * 4)
    assert store.read_range("job/segments/a.mp4", 10, 5) == bytes(range(10, 15))
    assert store.read_range("job/segments/a.mp4", 1020, 100) == bytes(range(252, 256))  # fewer at the end
    assert store.read_range("job/segments/a.mp4", 2000, 10) == b""
    with pytest.raises(ObjectNotFound):
        store.read_range("job/segments/missing.mp4", 0, 8)


def test_compose_writes_bytes_and_copied_ranges_in_order(store: Storage) -> None:
    """Two sources of 5 MiB and more (S3's part minimum) copied by range after a leading part that mixes
    bytes and a small range; the last part may be small."""
    first, second = bytes([1]) * (5 * MiB + 10), bytes([2]) * (6 * MiB)
    store.put_bytes("job/segments/1.mp4", first)
    store.put_bytes("job/segments/2.mp4", second)
    lead = (b"head", ByteRange("job/segments/2.mp4", 0, 3), b"\0" * (5 * MiB))
    parts = [lead, (ByteRange("job/segments/1.mp4", 5, 5 * MiB + 10),), (ByteRange("job/segments/2.mp4", 7, 9),)]
    size = store.compose("job/joined.mp4", parts, "video/mp4")
    expected = b"head" + second[:3] + b"\0" * (5 * MiB) + first[5:] + second[7:9]
    assert size == len(expected) == store.size("job/joined.mp4")
    assert store.get_bytes("job/joined.mp4") == expected


@pytest.mark.parametrize("store", ["local", "memory"], indirect=True)  # S3 itself answers InvalidRange (moto does not)
def test_compose_of_a_range_past_the_end_fails_and_writes_nothing(store: Storage) -> None:
    store.put_bytes("job/segments/1.mp4", b"abc")
    with pytest.raises(ValueError, match="past the end"):
        store.compose("job/joined.mp4", [(ByteRange("job/segments/1.mp4", 0, 10),)])
    assert store.size("job/joined.mp4") is None
