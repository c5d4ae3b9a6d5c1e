"""JobService: validation, upload limits, job creation, the job view and staleness."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MemoryParts, memory_runtime
from video_converter import keys
from video_converter.config import Settings
from video_converter.errors import (
    Conflict,
    InvalidRequest,
    JobNotFound,
    OutputNotReady,
    QueueUnavailable,
)
from video_converter.jobs import JobService, new_job, register_job, validate_formats
from video_converter.model import OutputRecord, OutputStatus, SourceInfo, is_job_id, new_job_id, utcnow
from video_converter.queues import MemoryQueue
from video_converter.runtime import Runtime

ALL = "1080p, 720p, 480p, 360p, webm, mp3, gif, thumbnail, hls, storyboard"


class CountingStream(io.RawIOBase):
    def __init__(self, total: int) -> None:
        self.total, self.sent, self.reads = total, 0, 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        n = self.total - self.sent if size < 0 else min(size, self.total - self.sent)
        self.sent += n
        return b"v" * n


@pytest.fixture
def conv(mem_runtime: Runtime) -> JobService:
    return JobService(mem_runtime)


def service(settings: Settings, tmp_path: Path, queue: MemoryQueue | None = None, **limits: Any) -> JobService:
    return JobService(memory_runtime(settings.model_copy(update=limits), tmp_path / "scratch", queue=queue))


def create(
    conv: JobService, formats: list[str], data: bytes = b"video bytes", name: str = "Clip.mov"
) -> dict[str, Any]:
    return conv.upload_and_create(io.BytesIO(data), name, formats).model_dump(mode="json")


def view_of(conv: JobService, job_id: str) -> dict[str, Any]:
    return conv.documents.view(job_id).model_dump(mode="json")


def test_no_format_names_the_choices(conv: JobService) -> None:
    for formats in ([], [""], [" ", ""]):
        with pytest.raises(InvalidRequest) as info:
            create(conv, formats)
        assert str(info.value) == f"Choose at least one format: {ALL}."
    assert MemoryParts(conv.rt).uploads.objects == {} and MemoryParts(conv.rt).converted.objects == {}


def test_unknown_format_is_named(conv: JobService) -> None:
    with pytest.raises(InvalidRequest) as info:
        create(conv, ["720p", "avi", "mkv"])
    assert str(info.value) == f"Unknown format 'avi', 'mkv'. Choose from: {ALL}."
    assert MemoryParts(conv.rt).uploads.objects == {}
    assert MemoryParts(conv.rt).queue.pending() == []


def test_formats_are_deduplicated_and_stripped() -> None:
    assert validate_formats(["mp3", " 720p ", "mp3", "720p", ""]) == ["mp3", "720p"]


def test_one_message_per_format(conv: JobService) -> None:
    view = create(conv, ["mp3", "720p", "mp3", "gif"])
    assert MemoryParts(conv.rt).queue.pending() == [
        {"job_id": view["job_id"], "format": "mp3"},  # sent the cheapest first
        {"job_id": view["job_id"], "format": "gif"},
        {"job_id": view["job_id"], "format": "720p"},
    ]
    assert [o["format"] for o in view["outputs"]] == ["mp3", "720p", "gif"]  # listed as asked


def test_empty_file_is_refused_and_nothing_stored(conv: JobService) -> None:
    with pytest.raises(InvalidRequest, match=r"^The uploaded file is empty\.$"):
        create(conv, ["720p"], data=b"")
    assert MemoryParts(conv.rt).uploads.objects == {} and MemoryParts(conv.rt).converted.objects == {}
    assert MemoryParts(conv.rt).queue.pending() == []


@pytest.mark.parametrize("name", [None, "", "   "])
def test_missing_filename(conv: JobService, name: str | None) -> None:
    with pytest.raises(InvalidRequest, match="no file name"):
        conv.upload_and_create(io.BytesIO(b"x"), name, ["720p"])


def test_long_filename(conv: JobService) -> None:
    with pytest.raises(InvalidRequest, match="255"):
        create(conv, ["720p"], name="a" * 256 + ".mp4")


def test_too_large_upload_is_stopped_early_and_deleted(settings: Settings, tmp_path: Path) -> None:
    conv = service(settings, tmp_path, max_upload_bytes=1000)
    stream = CountingStream(50 * 1024 * 1024)
    with pytest.raises(InvalidRequest) as info:
        conv.upload_and_create(stream, "big.mp4", ["720p"])
    assert str(info.value) == "The file is larger than the 1000 bytes limit."
    assert stream.sent < stream.total  # not read to the end
    assert stream.reads <= 2
    assert MemoryParts(conv.rt).uploads.objects == {} and MemoryParts(conv.rt).converted.objects == {}
    assert MemoryParts(conv.rt).queue.pending() == []


def test_upload_limit_boundaries(settings: Settings, tmp_path: Path) -> None:
    conv = service(settings, tmp_path, max_upload_bytes=1000)
    assert conv.uploads.store(new_job_id(), io.BytesIO(b"x" * 1000)) == 1000
    with pytest.raises(InvalidRequest, match="1000 bytes"):
        conv.uploads.store(new_job_id(), io.BytesIO(b"x" * 1001))


def test_limit_message_is_human(settings: Settings, tmp_path: Path) -> None:
    conv = service(settings, tmp_path, max_upload_bytes=3 * 1024**2)
    with pytest.raises(InvalidRequest, match=r"larger than the 3\.0 MiB limit"):
        conv.uploads.store(new_job_id(), CountingStream(4 * 1024**2))


def test_job_view_shape(conv: JobService) -> None:
    view = create(conv, ["720p", "mp3"], name="../Holiday Video.MOV")
    assert set(view) == {
        "job_id",
        "filename",
        "status",
        "error",
        "created_at",
        "source",
        "outputs",
        "webhook",
        "estimate",
    }
    assert view["webhook"] is None  # no callback_url
    assert view["estimate"] is None  # not probed yet (the API probes media, these are bytes)
    assert view["filename"] == "../Holiday Video.MOV"  # shown as given
    assert view["status"] == "queued"
    assert view["source"] is None
    assert view["created_at"].endswith("+00:00")
    required = {"format", "status", "progress", "error", "download_url", "size_bytes", "width", "height"}
    for out in view["outputs"]:
        assert required <= set(out)
        assert out["status"] == "queued" and out["progress"] == 0.0
        assert out["download_url"] is None and out["error"] is None
    assert view["outputs"][0]["filename"] == "Holiday_Video_720p.mp4"
    assert view["outputs"][1]["filename"] == "Holiday_Video_mp3.mp3"
    assert view_of(conv, view["job_id"]) == view


def test_job_record_is_stored(conv: JobService) -> None:
    view = create(conv, ["gif"], data=b"12345", name="a b.mp4")
    record = conv.rt.jobs.job(view["job_id"])
    assert record.stem == "a_b" and record.source_size == 5 and record.formats == ["gif"]
    assert conv.rt.uploads.get_bytes(keys.source_key(view["job_id"])) == b"12345"


def save(conv: JobService, job_id: str, record: OutputRecord) -> None:
    conv.rt.jobs.save_output(job_id, record)


def test_job_view_completed_output(conv: JobService) -> None:
    view = create(conv, ["720p", "mp3"])
    job_id = view["job_id"]
    key = keys.output_key(job_id, "Clip", "720p", "mp4")
    conv.rt.converted.put_bytes(key, b"mp4!")
    source = SourceInfo(duration=2.0, width=320, height=240, video_codec="h264", audio_codec="aac")
    save(conv, job_id, OutputRecord(format="720p", status=OutputStatus.COMPLETED, progress=99, key=key,
                                    size_bytes=4, width=320, height=240, source=source))  # fmt: skip
    save(conv, job_id, OutputRecord(format="mp3", status=OutputStatus.PROCESSING, progress=40.0, attempts=1))
    view = view_of(conv, job_id)
    assert view["status"] == "processing"
    assert view["source"] == source.model_dump()
    done, running = view["outputs"]
    assert done["progress"] == 100.0
    assert done["download_url"] == conv.documents.output_url(job_id, "720p")
    assert done["download_url"].startswith(f"memory://{job_id}/Clip_720p.mp4?filename=Clip_720p.mp4")
    assert (done["size_bytes"], done["width"], done["height"]) == (4, 320, 240)
    assert running["progress"] == 40.0 and running["download_url"] is None


def write_raw(conv: JobService, job_id: str, record: OutputRecord) -> None:
    """Write a record as-is (JobStore.save_output would refresh updated_at), in the job's summary too."""
    conv.rt.converted.put_bytes(keys.status_key(job_id, record.format), record.model_dump_json().encode())
    conv.rt.jobs.update_summary(
        job_id, lambda s: s.model_copy(update={"outputs": {**s.outputs, record.format: record}})
    )


def test_stale_processing_output_with_attempts_left_is_queued(conv: JobService) -> None:
    job_id = create(conv, ["720p"])["job_id"]
    old = utcnow() - timedelta(seconds=conv.settings.stale_after + 5)
    write_raw(conv, job_id, OutputRecord(format="720p", status=OutputStatus.PROCESSING, progress=55, attempts=1,
                                         updated_at=old))  # fmt: skip
    view = view_of(conv, job_id)
    assert view["status"] == "queued"
    assert view["outputs"][0]["status"] == "queued" and view["outputs"][0]["progress"] == 0.0


def test_stale_processing_output_without_attempts_left_is_failed(conv: JobService) -> None:
    job_id = create(conv, ["720p", "mp3"])["job_id"]
    old = utcnow() - timedelta(seconds=conv.settings.stale_after + 5)
    last = conv.settings.max_attempts
    write_raw(conv, job_id, OutputRecord(format="720p", status=OutputStatus.PROCESSING, attempts=last, updated_at=old))
    write_raw(conv, job_id, OutputRecord(format="mp3", status=OutputStatus.FAILED, error="x", attempts=1))
    view = view_of(conv, job_id)
    out = view["outputs"][0]
    assert out["status"] == "failed"
    assert out["error"] == (
        f"The conversion stopped responding {last} times (the worker was stopped or ran out of time)."
    )
    assert view["status"] == "failed"
    with pytest.raises(OutputNotReady, match="stopped responding"):
        conv.documents.output_url(job_id, "720p")


def test_recent_processing_output_is_left_alone(conv: JobService) -> None:
    job_id = create(conv, ["720p"])["job_id"]
    recent = utcnow() - timedelta(seconds=conv.settings.stale_after - 30)
    write_raw(conv, job_id, OutputRecord(format="720p", status=OutputStatus.PROCESSING, progress=55, attempts=3,
                                         updated_at=recent))  # fmt: skip
    out = view_of(conv, job_id)["outputs"][0]
    assert (out["status"], out["progress"]) == ("processing", 55)


def test_stale_queued_or_failed_outputs_are_not_touched(conv: JobService) -> None:
    job_id = create(conv, ["720p", "mp3"])["job_id"]
    old = utcnow() - timedelta(days=3)
    write_raw(conv, job_id, OutputRecord(format="720p", status=OutputStatus.QUEUED, attempts=9, updated_at=old))
    write_raw(conv, job_id, OutputRecord(format="mp3", status=OutputStatus.FAILED, error="e", updated_at=old))
    statuses = [o["status"] for o in view_of(conv, job_id)["outputs"]]
    assert statuses == ["queued", "failed"]


def test_output_url_errors(conv: JobService) -> None:
    job_id = create(conv, ["720p", "mp3"])["job_id"]
    with pytest.raises(OutputNotReady, match=r"^The 720p output is not ready yet \(queued\)\.$"):
        conv.documents.output_url(job_id, "720p")
    save(conv, job_id, OutputRecord(format="mp3", status=OutputStatus.FAILED, error="no audio"))
    with pytest.raises(OutputNotReady, match=r"^The mp3 output failed: no audio$"):
        conv.documents.output_url(job_id, "mp3")
    with pytest.raises(JobNotFound):
        conv.documents.output_url(job_id, "gif")  # not ordered
    with pytest.raises(JobNotFound):
        conv.documents.output_url(job_id, "avi")
    with pytest.raises(JobNotFound):
        conv.documents.output_url("0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11", "720p")
    with pytest.raises(JobNotFound):
        conv.documents.output_url("../../etc", "720p")


@pytest.mark.parametrize("job_id", ["", "nope", "../x", "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11", "a/b"])
def test_job_view_unknown(conv: JobService, job_id: str) -> None:
    with pytest.raises(JobNotFound):
        view_of(conv, job_id)


def test_create_job_from_upload_twice_is_refused(conv: JobService) -> None:
    upload_id = new_job_id()
    conv.uploads.store(upload_id, io.BytesIO(b"data"))
    assert conv.create_job(upload_id, "a.mp4", ["720p"]).job_id == upload_id
    with pytest.raises(Conflict, match="already exists"):
        conv.create_job(upload_id, "a.mp4", ["mp3"])
    assert len(MemoryParts(conv.rt).queue.pending()) == 1
    assert view_of(conv, upload_id)["outputs"][0]["format"] == "720p"


@pytest.mark.parametrize(
    ("upload_id", "message"),
    [
        ("not-an-id", "Unknown upload id."),
        ("../../etc/passwd", "Unknown upload id."),
        ("0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11", "Nothing was uploaded for this upload id (or the upload expired)."),
    ],
)
def test_create_job_bad_upload_id(conv: JobService, upload_id: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        conv.create_job(upload_id, "a.mp4", ["720p"])
    assert str(info.value) == message
    assert MemoryParts(conv.rt).queue.pending() == []


def test_create_job_from_empty_upload(conv: JobService) -> None:
    upload_id = new_job_id()
    conv.rt.uploads.put_bytes(keys.source_key(upload_id), b"")
    with pytest.raises(InvalidRequest, match="empty"):
        conv.create_job(upload_id, "a.mp4", ["720p"])


def test_upload_ticket(conv: JobService) -> None:
    ticket: dict[str, Any] = conv.uploads.ticket().model_dump()
    assert set(ticket) == {"upload_id", "url", "fields", "max_bytes", "expires_in"}
    assert ticket["url"] == f"memory://{ticket['upload_id']}/source"
    assert ticket["max_bytes"] == conv.settings.max_upload_bytes
    assert ticket["expires_in"] == conv.settings.upload_url_ttl
    assert conv.uploads.ticket().upload_id != ticket["upload_id"]


class BrokenQueue(MemoryQueue):
    """Accepts the first message, then the queue service goes away."""

    def send(self, body: dict[str, str], group: str = "", owner: str = "", priority: int = 0) -> None:
        if self.entries:
            raise ConnectionError("queue unreachable")
        super().send(body, group, owner, priority)


def test_queue_outage_fails_unsent_outputs_instead_of_leaving_them_queued(settings: Settings, tmp_path: Path) -> None:
    conv = service(settings, tmp_path, queue=BrokenQueue())
    with pytest.raises(QueueUnavailable, match="try again"):
        create(conv, ["720p", "480p", "mp3", "gif"])
    (job_id,) = {key.split("/")[0] for key in MemoryParts(conv.rt).converted.objects if is_job_id(key.split("/")[0])}
    view = view_of(conv, job_id)
    # The MP3 went first (the cheapest first), the others never left.
    assert [o["status"] for o in view["outputs"]] == ["failed", "failed", "queued", "failed"]
    assert view["outputs"][0]["error"] == "It could not be queued."


def test_an_upload_link_cannot_replace_the_source_of_an_existing_job(conv: JobService) -> None:
    job = create(conv, ["720p"], data=b"original")
    with pytest.raises(Conflict, match="already used"):
        conv.uploads.store(job["job_id"], io.BytesIO(b"replacement"))
    assert conv.rt.uploads.get_bytes(keys.source_key(job["job_id"])) == b"original"


# --- one upload, one job --------------------------------------------------------------------------


class HeldStream(io.RawIOBase):
    """An upload still arriving: the first read waits until ``go`` is set."""

    def __init__(self, data: bytes) -> None:
        self._buf, self.reading, self.go = io.BytesIO(data), threading.Event(), threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.reading.set()
        assert self.go.wait(10)
        return self._buf.read(size)


def test_concurrent_creations_from_one_upload_make_one_job(conv: JobService, monkeypatch: pytest.MonkeyPatch) -> None:
    upload_id = new_job_id()
    conv.uploads.store(upload_id, io.BytesIO(b"data"))
    monkeypatch.setattr(conv.rt.jobs, "exists", lambda job_id: False)  # only the claim of job.json decides
    start = threading.Barrier(20)

    def create_one(formats: list[str]) -> str:
        start.wait()
        try:
            return conv.create_job(upload_id, "a.mp4", formats).outputs[0].format
        except Conflict as exc:
            return str(exc)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create_one, [["720p", "mp3"] if n % 2 else ["gif"] for n in range(20)]))
    winners = [r for r in results if r != "A job already exists for this upload."]
    assert len(winners) == 1
    formats = ["720p", "mp3"] if winners == ["720p"] else ["gif"]
    sent = sorted(formats, key=lambda f: f != "mp3")  # the cheapest first
    assert MemoryParts(conv.rt).queue.pending() == [{"job_id": upload_id, "format": f} for f in sent]
    assert [o["format"] for o in view_of(conv, upload_id)["outputs"]] == formats


def test_a_ticket_uploads_once(conv: JobService) -> None:
    upload_id = new_job_id()
    assert conv.uploads.store(upload_id, io.BytesIO(b"first")) == 5
    with pytest.raises(Conflict) as info:
        conv.uploads.store(upload_id, io.BytesIO(b"second, before any job"))
    assert str(info.value) == "This upload link was already used; ask for a new one."
    conv.create_job(upload_id, "a.mp4", ["720p"])
    with pytest.raises(Conflict, match="already used"):
        conv.uploads.store(upload_id, io.BytesIO(b"third, after the job"))
    assert conv.rt.uploads.get_bytes(keys.source_key(upload_id)) == b"first"
    assert conv.documents.job(upload_id).source_size == 5


@pytest.mark.parametrize("data", [b"", b"x" * 1001], ids=["empty", "too large"])
def test_a_refused_upload_gives_the_ticket_back(settings: Settings, tmp_path: Path, data: bytes) -> None:
    conv = service(settings, tmp_path, max_upload_bytes=1000)
    upload_id = new_job_id()
    with pytest.raises(InvalidRequest):
        conv.uploads.store(upload_id, io.BytesIO(data))
    assert MemoryParts(conv.rt).uploads.objects == {}  # no original, no claim
    assert conv.uploads.store(upload_id, io.BytesIO(b"retry")) == 5


def test_an_interrupted_upload_gives_the_ticket_back(conv: JobService) -> None:
    class Disconnects(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise ConnectionResetError("client went away")

    upload_id = new_job_id()
    with pytest.raises(ConnectionResetError):
        conv.uploads.store(upload_id, Disconnects())
    assert MemoryParts(conv.rt).uploads.objects == {}
    assert conv.uploads.store(upload_id, io.BytesIO(b"retry")) == 5


def test_an_upload_racing_a_job_creation_cannot_replace_the_source(conv: JobService) -> None:
    """The upload holding the ticket has not finished: there is no job yet, and no other upload can start;
    once it has finished and the job exists, nothing replaces the original."""
    upload_id = new_job_id()
    first = HeldStream(b"first upload")
    with ThreadPoolExecutor(1) as pool:
        storing = pool.submit(conv.uploads.store, upload_id, first)
        assert first.reading.wait(10)
        with pytest.raises(InvalidRequest, match="Nothing was uploaded"):
            conv.create_job(upload_id, "a.mp4", ["720p"])  # nothing stored yet
        with pytest.raises(Conflict, match="already used"):
            conv.uploads.store(upload_id, io.BytesIO(b"a second upload"))
        first.go.set()
        assert storing.result(10) == len(b"first upload")
    conv.create_job(upload_id, "a.mp4", ["720p"])
    with pytest.raises(Conflict, match="already used"):
        conv.uploads.store(upload_id, io.BytesIO(b"x" * 100))
    assert conv.rt.uploads.get_bytes(keys.source_key(upload_id)) == b"first upload"


def test_register_job_claims_the_record_unless_told_to_replace(conv: JobService) -> None:
    first = new_job(new_job_id(), "a.mp4", ["720p"], 10)
    register_job(conv.rt.jobs, first)
    with pytest.raises(Conflict, match="already exists"):
        register_job(conv.rt.jobs, first.model_copy(update={"formats": ["mp3"]}))
    assert conv.rt.jobs.job(first.job_id).formats == ["720p"]
    conv.rt.jobs.save_output(first.job_id, OutputRecord(format="mp3", status=OutputStatus.FAILED, error="x"))
    register_job(conv.rt.jobs, first.model_copy(update={"formats": ["mp3"]}), replace=True)
    assert conv.rt.jobs.job(first.job_id).formats == ["mp3"]
    assert conv.rt.jobs.output(first.job_id, "mp3").status is OutputStatus.QUEUED  # reset
