"""The multipart part of the Storage contract, over LocalStorage, MemoryStorage and S3Storage (moto,
in-process): start, parts (replaced, listed), complete, abort; and the local store's own (signed part
URLs, parts hidden from listings, kept out of the joined object until complete, the janitor's view)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.unit import test_storage
from tests.unit.test_storage import CountingStream, local
from video_converter.storage import LocalStorage, ObjectNotFound, Storage
from video_converter.storage.base import Part

KEY = "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11/source"
MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part (but the last)

store = test_storage.store  # the fixture: every implementation


def test_parts_are_listed_and_joined_in_order(store: Storage) -> None:
    upload = store.start_multipart(KEY, PART, "video/mp4")
    first = store.put_part(KEY, upload, 1, CountingStream(PART))
    third = store.put_part(KEY, upload, 3, io.BytesIO(b"tail"))
    assert [(p.number, p.size) for p in store.list_parts(KEY, upload)] == [(1, PART), (3, 4)]
    second = store.put_part(KEY, upload, 2, io.BytesIO(b"x" * PART))
    assert store.list_parts(KEY, upload) == [first, second, third]
    assert store.size(KEY) is None  # nothing is visible before it is complete
    store.complete_multipart(KEY, upload, [first, second, third])
    data = store.get_bytes(KEY)
    assert len(data) == 2 * PART + 4 and data.startswith(b"\x01") and data.endswith(b"x" * 10 + b"tail")
    with pytest.raises(ObjectNotFound):
        store.list_parts(KEY, upload)  # the upload is over


def test_a_part_sent_again_replaces_the_first_copy(store: Storage) -> None:
    upload = store.start_multipart(KEY, PART)
    old = store.put_part(KEY, upload, 1, io.BytesIO(b"a" * 10))
    new = store.put_part(KEY, upload, 1, io.BytesIO(b"b" * 12))
    assert old.etag != new.etag
    assert store.list_parts(KEY, upload) == [new]
    store.complete_multipart(KEY, upload, [new])
    assert store.get_bytes(KEY) == b"b" * 12


def test_completing_with_a_wrong_etag_is_refused(store: Storage) -> None:
    upload = store.start_multipart(KEY, PART)
    part = store.put_part(KEY, upload, 1, io.BytesIO(b"a" * 10))
    with pytest.raises(ValueError):
        store.complete_multipart(KEY, upload, [Part(1, 10, '"' + "0" * 32 + '"')])
    with pytest.raises(ValueError):
        store.complete_multipart(KEY, upload, [part, Part(2, 1, part.etag)])  # never sent
    assert store.size(KEY) is None
    store.complete_multipart(KEY, upload, [part])  # still open: the right parts complete it
    assert store.get_bytes(KEY) == b"a" * 10


def test_abort_drops_the_parts_and_is_idempotent(store: Storage) -> None:
    upload = store.start_multipart(KEY, PART)
    store.put_part(KEY, upload, 1, io.BytesIO(b"a" * 10))
    store.abort_multipart(KEY, upload)
    store.abort_multipart(KEY, upload)  # nothing left: fine
    with pytest.raises(ObjectNotFound):
        store.list_parts(KEY, upload)
    assert store.size(KEY) is None


def test_an_unknown_upload_is_not_found(store: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        store.list_parts(KEY, "0" * 32)


# Not S3 under moto: moto finds an upload by its id alone (and fails a part of an unknown one with a
# KeyError); S3 answers NoSuchUpload for both.
@pytest.mark.parametrize("store", ["local", "memory"], indirect=True)
def test_an_upload_belongs_to_its_key(store: Storage) -> None:
    upload = store.start_multipart(KEY, PART)
    other = KEY.replace("source", "other")
    with pytest.raises(ObjectNotFound):
        store.list_parts(other, upload)
    with pytest.raises(ObjectNotFound):
        store.put_part(other, upload, 1, io.BytesIO(b"x"))
    with pytest.raises(ObjectNotFound):
        store.put_part(KEY, "0" * 32, 1, io.BytesIO(b"x"))


# Not S3: its part URLs are signed for the part's size (ContentLength), which moto does not check.
@pytest.mark.parametrize("store", ["local", "memory"], indirect=True)
def test_parts_are_held_to_the_part_size(store: Storage) -> None:
    upload = store.start_multipart(KEY, 10)
    with pytest.raises(ValueError):
        store.put_part(KEY, upload, 1, io.BytesIO(b"a" * 11))
    short = store.put_part(KEY, upload, 1, io.BytesIO(b"a" * 9))
    last = store.put_part(KEY, upload, 2, io.BytesIO(b"b" * 3))
    with pytest.raises(ValueError):
        store.complete_multipart(KEY, upload, [short, last])  # only the last part may be short
    with pytest.raises(ValueError):
        store.complete_multipart(KEY, upload, [last])  # numbered from 1, without gaps
    whole = store.put_part(KEY, upload, 1, io.BytesIO(b"a" * 10))
    store.complete_multipart(KEY, upload, [whole, last])
    assert store.get_bytes(KEY) == b"a" * 10 + b"b" * 3


@pytest.mark.parametrize("number", [0, 10_001, -1])
def test_part_numbers_are_1_to_10000(store: Storage, number: int) -> None:
    upload = store.start_multipart(KEY, PART)
    with pytest.raises(ValueError):
        store.put_part(KEY, upload, number, io.BytesIO(b"x"))


def test_part_urls_name_the_upload_and_the_part(store: Storage) -> None:
    upload = store.start_multipart(KEY, PART)
    url = store.part_url(KEY, upload, 7, 8 * MIB, 600)
    assert "7" in url and upload in url


# --- the local store's own -------------------------------------------------------------------------------


def test_local_parts_stream_in_chunks_and_stay_out_of_listings(tmp_path: Path) -> None:
    disk = local(tmp_path)
    upload = disk.start_multipart(KEY, 3 * MIB)
    stream = CountingStream(3 * MIB)
    disk.put_part(KEY, upload, 1, stream)
    assert stream.largest_read <= MIB  # read in chunks, never whole
    folder = KEY.split("/")[0] + "/"
    assert disk.list(folder) == []  # the parts wait hidden
    assert [(k, u) for k, u, _ in disk.unfinished_multipart()] == [(KEY, upload)]
    assert disk.delete_prefix(folder) >= 0
    assert disk.unfinished_multipart() == []  # removed with the job's folder


def test_local_a_part_cut_short_is_not_received(tmp_path: Path) -> None:
    disk = local(tmp_path)
    upload = disk.start_multipart(KEY, 3 * MIB)
    good = disk.put_part(KEY, upload, 2, io.BytesIO(b"a" * 10))
    disk.put_part(KEY, upload, 1, io.BytesIO(b"b" * 3 * MIB))
    with pytest.raises(ConnectionResetError):
        disk.put_part(KEY, upload, 1, CountingStream(3 * MIB, fail_after_reads=2))
    assert disk.list_parts(KEY, upload) == [good]  # sent again, never joined half-written
    again = disk.put_part(KEY, upload, 1, io.BytesIO(b"c" * 3 * MIB))
    disk.complete_multipart(KEY, upload, [again, good])
    assert disk.get_bytes(KEY) == b"c" * 3 * MIB + b"a" * 10


def test_local_part_url_is_signed_for_the_part_and_its_size(tmp_path: Path) -> None:
    disk = local(tmp_path)
    upload = disk.start_multipart(KEY, 3 * MIB)
    url = disk.part_url(KEY, upload, 2, 100, 60)
    path, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert path == f"/files/converted/{KEY}"
    assert disk.verify(KEY, params["expires"], params["signature"], upload=upload, part="2", size="100")
    assert not disk.verify(KEY, params["expires"], params["signature"], upload=upload, part="3", size="100")
    assert not disk.verify(KEY, params["expires"], params["signature"], upload=upload, part="2", size="101")


def test_local_crafted_upload_ids_and_etags_reach_no_path(tmp_path: Path) -> None:
    disk = local(tmp_path)
    assert isinstance(disk, LocalStorage)
    with pytest.raises(ObjectNotFound):
        disk.list_parts(KEY, "../../etc")
    upload = disk.start_multipart(KEY, 3 * MIB)
    disk.put_part(KEY, upload, 1, io.BytesIO(b"a"))
    with pytest.raises(ValueError):
        disk.complete_multipart(KEY, upload, [Part(1, 1, "../../../../etc/passwd")])
