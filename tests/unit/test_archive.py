"""GET /api/jobs/{id}/archive: a ZIP of the completed outputs, streamed from the store in chunks."""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections.abc import Iterator

from fastapi.testclient import TestClient

from api.main import create_app
from video_converter import archive, keys
from video_converter.model import OutputRecord, OutputStatus, utcnow
from video_converter.runtime import Runtime
from video_converter.storage import MemoryStorage
from video_converter.storage.base import CHUNK


def complete(rt: Runtime, job_id: str, format_id: str, data: bytes, ext: str = "mp4") -> None:
    key = keys.output_key(job_id, "video", format_id, ext)
    rt.converted.put_bytes(key, data)
    record = OutputRecord(format=format_id, status=OutputStatus.COMPLETED, key=key, size_bytes=len(data))
    rt.jobs.save_output(job_id, record)


def test_archive_holds_the_completed_outputs(mem_runtime: Runtime) -> None:
    with TestClient(create_app(mem_runtime)) as client:
        files = {"file": ("отпуск.mp4", b"data", "video/mp4")}
        job_id = client.post("/api/jobs", data={"formats": ["720p", "mp3", "gif"]}, files=files).json()["job_id"]
        assert client.get(f"/api/jobs/{job_id}/archive").status_code == 409  # nothing ready yet
        video = os.urandom(3 * CHUNK + 11)
        complete(mem_runtime, job_id, "720p", video)
        complete(mem_runtime, job_id, "mp3", b"ID3 audio", "mp3")
        response = client.get(f"/api/jobs/{job_id}/archive")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert response.headers["content-disposition"].startswith('attachment; filename="otpusk.zip"; filename*=')
        with zipfile.ZipFile(io.BytesIO(response.content)) as archived:
            assert archived.testzip() is None
            assert sorted(archived.namelist()) == ["отпуск_720p.mp4", "отпуск_mp3.mp3"]  # gif is not done
            assert archived.read("отпуск_720p.mp4") == video
        assert client.get(f"/api/jobs/{'0' * 8}-0000-4000-8000-{'0' * 12}/archive").status_code == 404


class SpyStorage(MemoryStorage):
    """Records every read of an opened object (which key, what size was asked)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int]] = []

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[io.BytesIO]:
        stream = io.BytesIO(self.get_bytes(key))
        reads = self.reads

        class Spy(io.BytesIO):
            def read(self, size: int | None = -1, /) -> bytes:
                reads.append((key, -1 if size is None else size))
                return stream.read(size)

        yield Spy()


def test_members_are_read_in_chunks_and_one_at_a_time() -> None:
    store = SpyStorage()
    for name in ("a", "b"):
        store.put_bytes(f"j/{name}", os.urandom(2 * CHUNK + 1))
    members = [archive.Member(n, f"j/{n}", 2 * CHUNK + 1, utcnow()) for n in ("a", "b")]
    chunks = archive.zip_stream(store, members)
    first = next(chunks)
    assert first.startswith(b"PK") and {key for key, _ in store.reads} <= {"j/a"}  # b is not opened yet
    body = first + b"".join(chunks)
    assert {size for _, size in store.reads} == {CHUNK}  # never read whole
    with zipfile.ZipFile(io.BytesIO(body)) as archived:
        assert archived.read("b") == store.get_bytes("j/b")
