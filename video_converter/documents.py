"""The read side: the job document as the API answers it (and as the webhook sends it), each output
as it stands, its download link, and the ZIP of every completed output.

Job records never change once written, and neither do segment plans, so each reader keeps the recent
ones. A poll reads the job's summary, every output's record in one object (``video_converter.summary``),
and the records one by one only when there is none. An output's record is read as it stands: a
segmented one's progress is counted from its encoded pieces (as the summary lists them, or listed),
and a record whose worker went silent is reported as waiting for a retry (or failed when no
attempt is left).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from . import bundle, estimate, keys, ownerindex, playback, segmenting, streams
from .archive import Member, zip_stream
from .errors import JobNotFound, NotFound, OutputNotReady
from .model import JobRecord, OutputRecord, OutputStatus, SegmentPlan, SourceInfo, job_status, utcnow
from .owners import Owner
from .presets import PRESETS
from .runtime import Runtime
from .storage import ObjectNotFound
from .summary import JobSummary, Pieces
from .views import EstimateView, JobBrief, JobList, JobView, OutputView, WebhookDelivery

HLS_FORMAT = "hls"
STORYBOARD_FORMAT = "storyboard"


def stream_links(job_id: str, format_id: str) -> dict[str, str]:
    """The API's addresses of a completed output's stream files: the HLS master playlist and the DASH
    manifest of a stream, the WebVTT track of a storyboard (relative: the API is where they are)."""
    base = f"/api/jobs/{job_id}"
    if format_id == HLS_FORMAT:
        return {"playlist_url": f"{base}/stream/{streams.MASTER}", "dash_url": f"{base}/stream/{streams.MANIFEST}"}
    if format_id == STORYBOARD_FORMAT:
        return {"track_url": f"{base}/storyboard.vtt"}
    return {}


# Records kept per reader: job records and segment plans never change once written.
CACHE_SIZE = 1024

_T = TypeVar("_T")
_R = TypeVar("_R")


class _Recent(collections.OrderedDict[str, _T]):
    """The most recently used ``CACHE_SIZE`` values, safe to share between threads."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def get_or_read(self, key: str, read: Callable[[], _T | None]) -> _T | None:
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = read()
        if value is not None:
            with self.lock:
                self[key] = value
                while len(self) > CACHE_SIZE:
                    self.popitem(last=False)
        return value

    def drop(self, key: str) -> None:
        with self.lock:
            self.pop(key, None)


class JobDocuments:
    """Reads jobs for the API and the webhook. With ``read_threads`` > 1, an output's records are read
    in parallel: a poll of an 8-format job then costs one S3 round trip, not eight."""

    def __init__(self, rt: Runtime, *, read_threads: int = 1, player_assets: Mapping[str, Path] | None = None) -> None:
        self.rt = rt
        # The stream player's files (name in a bundle -> file), which the API serves (api/static)
        self.player_assets = player_assets or {}
        self._pool = ThreadPoolExecutor(read_threads, thread_name_prefix="records") if read_threads > 1 else None
        self._jobs: _Recent[JobRecord] = _Recent()
        self._plans: _Recent[SegmentPlan] = _Recent()
        self.speeds = estimate.SpeedBook.of(rt.converted)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _map(self, read: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        return list(self._pool.map(read, items) if self._pool is not None else map(read, items))

    def job(self, job_id: str) -> JobRecord:
        record = self._jobs.get_or_read(job_id, lambda: self.rt.jobs.job(job_id))
        assert record is not None  # JobStore.job raises JobNotFound instead
        return record

    def existing(self, job_id: str) -> JobRecord:
        """The job's record, once the store confirms the job still exists: a cached record alone would keep
        answering for a job another API process deleted (HEAD /api/jobs/{id} must agree with GET)."""
        record = self.job(job_id)
        if not self.rt.jobs.exists(job_id):
            self.forget(job_id)
            raise JobNotFound(job_id)
        return record

    def forget(self, job_id: str) -> None:
        """Drop what this reader keeps of a job (its record and its segment plan)."""
        self._jobs.drop(job_id)
        self._plans.drop(job_id)

    def outputs(self, record: JobRecord) -> list[OutputRecord]:
        """Every output's record as the API reports it. Every output has a record from the job's creation
        on (once ``register_job`` has written them), so a missing one means the job is being created or
        was deleted (maybe by another API process, whose deletion this reader's cache did not see)."""
        found = self.rt.jobs.summary(record.job_id)
        if found is not None and not set(found.outputs) <= set(record.formats):
            self.forget(record.job_id)  # formats were added since this reader kept the record
            record = self.job(record.job_id)
        summarized = self._summarized(record, found)
        if summarized is not None:
            return summarized
        read = self._map(lambda format_id: self._current(record.job_id, format_id), record.formats)
        if any(out is None for out in read) and not self.rt.jobs.exists(record.job_id):
            self.forget(record.job_id)
            raise JobNotFound(record.job_id)
        return [out or OutputRecord(format=f) for out, f in zip(read, record.formats, strict=True)]

    def _summarized(self, record: JobRecord, found: JobSummary | None) -> list[OutputRecord] | None:
        """Every output's record from the job's summary, in one read (``video_converter.summary``); None
        when there is none or it lacks an output (then the records are read one by one)."""
        if found is None or not all(f in found.outputs for f in record.formats):
            return None
        outputs = []
        for format_id in record.formats:
            out = found.outputs[format_id]
            if segmenting.in_pieces(out):
                pieces = found.pieces.get(format_id) or Pieces()
                out = out.seen(pieces.progress, segmenting.alive_at(out, pieces.done))
            outputs.append(self._effective(out))
        return outputs

    def _current(self, job_id: str, format_id: str) -> OutputRecord | None:
        """An output's record as it stands (None if there is none)."""
        out = self.rt.jobs.find_output(job_id, format_id)
        if out is None:
            return None
        if segmenting.in_pieces(out):
            plan = self._plans.get_or_read(job_id, lambda: segmenting.load_plan(self.rt.uploads, job_id))
            if plan is not None:
                out = segmenting.as_seen(out, plan, segmenting.finished(self.rt.converted, job_id, format_id))
        return self._effective(out)

    def _effective(self, out: OutputRecord) -> OutputRecord:
        """A record whose worker went silent is reported as waiting for a retry, or failed when none is left."""
        settings = self.rt.settings
        if out.status is not OutputStatus.PROCESSING or utcnow() - out.updated_at < timedelta(
            seconds=settings.stale_after
        ):
            return out
        if out.attempts >= settings.max_attempts:
            return out.failed(
                f"The conversion stopped responding {out.attempts} times (the worker was stopped or ran out of time)."
            )
        return out.released()

    def view(self, job_id: str) -> JobView:
        """The job document: GET /api/jobs/{id}, and the webhook's body."""
        record = self.job(job_id)
        outputs = self.outputs(record)
        source: SourceInfo | None = next((o.source for o in outputs if o.source is not None), record.source)
        failed = any(o.status is OutputStatus.FAILED for o in outputs)
        status = job_status(o.status for o in outputs)
        return JobView(
            job_id=record.job_id,
            filename=record.filename,
            error=self.rt.jobs.failure(job_id) if failed else None,  # read only when it can exist
            status=status,
            created_at=record.created_at,
            source=source,
            outputs=[self._output_view(record, o) for o in outputs],
            webhook=self._webhook(record) if status.finished else None,  # read only when it can exist
            estimate=self._estimate(record, outputs, source),
        )

    def _estimate(
        self, record: JobRecord, outputs: list[OutputRecord], source: SourceInfo | None
    ) -> EstimateView | None:
        """The job's forecast (``video_converter.estimate``), over this server's workers (on AWS: each
        message has its own Lambda)."""
        settings = self.rt.settings
        workers = None if settings.backend == "aws" else max(1, settings.workers)
        now = utcnow()
        found = estimate.forecast(
            record,
            outputs,
            source,
            self.speeds.current(),
            workers=workers,
            segment_seconds=settings.segment_seconds,
            now=now,
        )
        if found is None or not found.outputs:
            return None
        return EstimateView(
            seconds_left=round(found.seconds_left, 1),
            finish_at=now + timedelta(seconds=found.seconds_left),
            outputs={f: round(seconds, 1) for f, seconds in found.outputs.items()},
            calibrated=found.calibrated,
        )

    def _webhook(self, record: JobRecord) -> WebhookDelivery | None:
        """The finished job's webhook delivery (None without a callback_url, or before it is queued)."""
        if not record.callback_url:
            return None
        try:
            return WebhookDelivery.model_validate_json(self.rt.converted.get_bytes(keys.webhook_key(record.job_id)))
        except (ObjectNotFound, ValueError):
            return None

    def _output_view(self, record: JobRecord, out: OutputRecord) -> OutputView:
        preset = PRESETS[out.format]
        completed = out.status is OutputStatus.COMPLETED and out.key is not None
        link = self._download_url(record, out) if completed else None
        return OutputView.of(
            preset,
            out,
            download_url=link,
            filename=record.download_filename(out.format, preset.extension),
            links=stream_links(record.job_id, out.format) if completed else {},
        )

    def _download_url(self, record: JobRecord, out: OutputRecord) -> str:
        preset = PRESETS[out.format]
        assert out.key is not None
        if preset.stream is not None:  # many files: the API's master playlist, which signs them
            return stream_links(record.job_id, out.format)["playlist_url"]
        return self.rt.converted.download_url(
            out.key,
            record.download_filename(out.format, preset.extension),
            preset.media_type,
            self.rt.settings.download_url_ttl,
        )

    def completed_output(self, job_id: str, format_id: str) -> tuple[JobRecord, OutputRecord]:
        """A completed output of the job and the job's record; OutputNotReady says why there is none.
        Every route that serves an output's files asks here (downloads, stream playlists, storyboard
        tracks): the one place that decides who may have them."""
        record = self.job(job_id)
        if format_id not in record.formats:
            self.forget(job_id)  # it may have been added since this reader kept the record
            record = self.job(job_id)
        if format_id not in record.formats:
            raise JobNotFound(f"{job_id}/{format_id}")
        found = self._current(job_id, format_id)
        if found is None and not self.rt.jobs.exists(job_id):  # deleted (see ``outputs``)
            self.forget(job_id)
            raise JobNotFound(job_id)
        out = found or OutputRecord(format=format_id)
        if out.status is not OutputStatus.COMPLETED:  # the summary learns of a completion first
            summarized = self.rt.jobs.summary(job_id)
            done = summarized.outputs.get(format_id) if summarized is not None else None
            out = done if done is not None and done.status is OutputStatus.COMPLETED else out
        if out.status is OutputStatus.FAILED:
            raise OutputNotReady(f"The {format_id} output failed: {out.error}")
        if out.status is not OutputStatus.COMPLETED or out.key is None:
            raise OutputNotReady(f"The {format_id} output is not ready yet ({out.status.value}).")
        return record, out

    def output_url(self, job_id: str, format_id: str) -> str:
        """A fresh signed link to a completed output; OutputNotReady says why there is none."""
        return self._download_url(*self.completed_output(job_id, format_id))

    def stream_document(self, job_id: str, name: str) -> str:
        """A playlist or the manifest of the job's stream (``name``, checked by the caller against
        ``playback``'s names), its media files' URLs signed afresh."""
        self.completed_output(job_id, HLS_FORMAT)
        prefix, converted, ttl = streams.stream_prefix(job_id), self.rt.converted, self.rt.settings.download_url_ttl
        try:
            text = converted.get_bytes(prefix + name).decode()
        except ObjectNotFound:
            raise NotFound("The stream has no such file.") from None

        def sign(file: str) -> str:
            return converted.download_url(prefix + file, file, streams.media_type(file), ttl)

        return (
            playback.signed_manifest(text, sign) if name == streams.MANIFEST else playback.signed_playlist(text, sign)
        )

    def storyboard_track(self, job_id: str) -> str:
        """The WebVTT thumbnails track of the job's storyboard, naming its sprite by a fresh link."""
        record, out = self.completed_output(job_id, STORYBOARD_FORMAT)
        return playback.storyboard_track(out, self._download_url(record, out))

    def archive(self, job_id: str) -> tuple[str, Iterator[bytes]]:
        """The archive's download name and its bytes, streamed: every completed output of the job, a file
        that is several outputs' (``same_as``) once; a stream as its bundle, a folder that plays from any
        static host (``bundle``)."""
        record = self.job(job_id)
        outputs = self.outputs(record)
        members = []
        for out in outputs:
            if out.status is not OutputStatus.COMPLETED or out.key is None or out.size_bytes is None:
                continue
            if out.same_as is not None and any(o.format == out.same_as and o.key == out.key for o in outputs):
                continue  # its file is in the archive under the output it is the same as
            if PRESETS[out.format].stream is not None:
                members += bundle.members(self.rt.converted, record, out, outputs, self.player_assets)
                continue
            name = record.download_filename(out.format, PRESETS[out.format].extension)
            members.append(Member(name=name, key=out.key, size=out.size_bytes, modified=out.updated_at))
        if not members:
            raise OutputNotReady("No output of this job is ready yet, so there is nothing to put in an archive.")
        return f"{record.download_stem or record.stem}.zip", zip_stream(self.rt.converted, members)

    # Owners (video_converter.owners): every job route looks a job up through ``owned``.

    def owned(self, job_id: str, owner: Owner) -> JobRecord:
        """The job's record if it is ``owner``'s; JobNotFound, exactly as for an unknown id, otherwise.
        A record that is not the caller's is read from the store again, never answered from the cache, so
        that another owner's job costs the one store read an unknown id costs: the answer and its timing
        say nothing about whether the job exists."""
        with self._jobs.lock:
            cached = self._jobs.get(job_id)
        if cached is not None and owner.owns(cached.owner):
            return cached
        record = self.rt.jobs.job(job_id)  # raises JobNotFound for an unknown id
        if not owner.owns(record.owner):
            raise JobNotFound(job_id)
        self._jobs.get_or_read(job_id, lambda: record)
        return record

    def listing(self, owner: Owner, limit: int, cursor: str | None = None) -> JobList:
        """The owner's jobs, newest first (``video_converter.ownerindex``); entries whose job is gone are
        dropped on the way."""
        names, more = ownerindex.page(self.rt.converted, owner.id, limit, cursor)
        briefs = self._map(self._brief, [ownerindex.job_of(name) for name in names])
        for name, brief in zip(names, briefs, strict=True):
            if brief is None:
                ownerindex.drop(self.rt.converted, owner.id, name)
        return JobList(jobs=[b for b in briefs if b is not None], next_cursor=names[-1] if more and names else None)

    def _brief(self, job_id: str) -> JobBrief | None:
        """A job as a listing shows it, from its summary (one read); None when the job is gone."""
        try:
            record = self.job(job_id)
        except JobNotFound:
            return None
        found = self.rt.jobs.summary(job_id)
        if found is None or not all(f in found.outputs for f in record.formats):
            if not self.rt.jobs.exists(job_id):
                self.forget(job_id)
                return None
            statuses = [(self.rt.jobs.find_output(job_id, f) or OutputRecord(format=f)).status for f in record.formats]
        else:
            statuses = [self._effective(found.outputs[f]).status for f in record.formats]
        return JobBrief(
            job_id=job_id,
            filename=record.filename,
            status=job_status(statuses),
            formats=record.formats,
            created_at=record.created_at,
        )
