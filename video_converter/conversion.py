"""Converting one output, as named steps that can each be tested alone.

``OutputTask`` is one (job, format) while a worker holds its message: the records it reads and the
state transitions it writes (started, probed, progressed, completed, failed, requeued, released).
``convert`` runs the steps: check the original is the one the job was created with, fetch it, probe
it, encode, check the result, publish it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import keys, segments
from .errors import JobNotFound
from .ffmpeg import FFmpeg, FFmpegError, InvalidMedia
from .ffmpeg.parse import ProbeFacts
from .limits import Limits, MediaRejected, check_media
from .model import JobRecord, OutputRecord, OutputStatus, SegmentPlan, SourceInfo
from .presets import PRESETS, Preset
from .records import JobStore
from .storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # seconds between progress writes


class SourceReplaced(Exception):
    """The original is not the file the job was created from. Never retried."""

    def __init__(self) -> None:
        super().__init__("The original was replaced after the job was created; upload it again as a new job.")


@dataclass
class OutputTask:
    jobs: JobStore
    job: JobRecord
    preset: Preset
    record: OutputRecord

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def format_id(self) -> str:
        return self.preset.id

    def _save(self, **changes: Any) -> OutputRecord:
        self.record = self.jobs.save_output(self.job_id, self.record.model_copy(update=changes))
        return self.record

    def is_done(self, converted: Storage) -> bool:
        """Finished already: completed with its file in place, or failed (a failure is final, so a late
        redelivery never overwrites the reason)."""
        if self.record.status is OutputStatus.FAILED:
            return True
        return (
            self.record.status is OutputStatus.COMPLETED
            and self.record.key is not None
            and converted.size(self.record.key) is not None
        )

    def started(self, attempt: int) -> OutputRecord:
        return self._save(status=OutputStatus.PROCESSING, progress=0.0, attempts=attempt, error=None)

    def probed(self, source: SourceInfo) -> OutputRecord:
        return self._save(source=source, note=self.preset.size_note(source))

    def progressed(self, percent: float) -> OutputRecord:
        return self._save(progress=min(percent, 99.0))

    def completed(self, key: str, size: int, result: SourceInfo) -> OutputRecord:
        log.info("job %s: %s done (%d bytes)", self.job_id, self.format_id, size)
        return self._save(
            status=OutputStatus.COMPLETED,
            progress=100.0,
            key=key,
            size_bytes=size,
            width=result.width,
            height=result.height,
            duration=result.duration,
        )

    def segmented(self, plan: SegmentPlan) -> SegmentPlan:
        """Converted in ``plan.count`` pieces from now on; progress is then counted from the pieces."""
        self._save(segments=plan.count, progress=0.0)
        return plan

    def failed(self, reason: str) -> OutputRecord:
        log.warning("job %s: %s failed: %s", self.job_id, self.format_id, reason)
        return self._save(status=OutputStatus.FAILED, error=reason)

    def requeued(self, reason: str) -> OutputRecord:
        """This attempt failed for a reason that may pass; the next delivery tries again."""
        return self._save(status=OutputStatus.QUEUED, progress=0.0, error=reason)

    def released(self) -> OutputRecord:
        """The worker is stopping: back to queued, as if this attempt had not started."""
        return self._save(status=OutputStatus.QUEUED, progress=0.0)


def load_task(jobs: JobStore, job_id: str, format_id: str) -> OutputTask | None:
    """The task for a message, or None when its job is gone or never asked for this format."""
    try:
        job = jobs.job(job_id)
    except JobNotFound:
        log.warning("message for unknown job %s/%s dropped", job_id, format_id)
        return None
    preset = PRESETS.get(format_id)
    if preset is None or format_id not in job.formats:
        log.warning("message for unknown format %s/%s dropped", job_id, format_id)
        return None
    return OutputTask(jobs, job, preset, jobs.output(job_id, format_id))


def progress_writer(save: Callable[[float], object], interval: float = PROGRESS_INTERVAL) -> Callable[[float], None]:
    """FFmpeg reports progress many times a second; ``save`` at most once per ``interval`` (and at 100 %)."""
    last = float("-inf")

    def on_progress(percent: float) -> None:
        nonlocal last
        now = time.monotonic()
        if percent < 100 and now - last < interval:
            return
        last = now
        save(percent)

    return on_progress


class SourceRejected(Exception):
    """The original is not media FFmpeg can read, or is over a limit: no output of its job can be made.
    ``str()`` is the job-level sentence, saying what to do."""


NOT_CONVERTED = "Not converted: the original could not be used (the job's error says why)."


def source_problem(exc: Exception) -> str:
    """The one sentence for an unusable original, the same from the API's upload check and a worker."""
    message = str(exc) if isinstance(exc, MediaRejected) else f"{exc}."
    return f"{message} Nothing was converted; upload a video or audio file."


def inspect(ffmpeg: FFmpeg, task: OutputTask, source_path: Path, limits: Limits) -> ProbeFacts:
    """Probe the original and refuse it before any encode if it is over a limit or unsuitable."""
    try:
        facts = ffmpeg.inspect(source_path)
        task.probed(facts.info)
        check_media(facts, limits)
    except (InvalidMedia, MediaRejected) as exc:
        raise SourceRejected(source_problem(exc)) from exc
    task.preset.check_source(facts.info)
    return facts


def encode(
    ffmpeg: FFmpeg,
    task: OutputTask,
    source_path: Path,
    facts: ProbeFacts,
    limits: Limits,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Path:
    """Run the preset's FFmpeg command into ``workdir``; return the output's path."""
    preset, source = task.preset, facts.info
    output = workdir / keys.output_filename(task.job.stem, preset.id, preset.extension)
    duration = source.duration
    if preset.max_seconds and duration:
        duration = min(duration, preset.max_seconds)
    ffmpeg.convert(
        source_path,
        output,
        preset.output_args(source),
        input_args=preset.input_args(source),
        duration=duration,
        max_seconds=limits.input_seconds(facts, preset.max_seconds),
        timeout=timeout,
        on_progress=progress_writer(task.progressed),
        cancel=cancel,
    )
    return output


def check_source(uploads: Storage, task: OutputTask) -> None:
    """Refuse an original whose size changed since the job was created, before fetching it.

    On AWS the browser POSTs straight to S3, and S3 cannot stop a second POST with the same (still valid)
    ticket from replacing the original after the job exists; in local mode the upload route refuses a
    used ticket. The size is what the job recorded, so a replacement of another size is caught here (one
    of the same size is not)."""
    size = uploads.size(task.job.source_key)
    if size is None:
        raise ObjectNotFound(task.job.source_key)
    if size != task.job.source_size:
        raise SourceReplaced


def check_output(ffmpeg: FFmpeg, path: Path) -> SourceInfo:
    """FFmpeg can exit 0 having written nothing (no frame where it looked): say so, don't store it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidMedia("The conversion produced no output: the source has no frames FFmpeg could decode there")
    try:
        return ffmpeg.probe(path, trusted=True)
    except InvalidMedia as exc:
        raise FFmpegError("The converted file could not be read back", stderr_tail=exc.stderr_tail) from exc


def publish(converted: Storage, task: OutputTask, path: Path, result: SourceInfo) -> OutputRecord:
    """Store the output at its key, then mark the record completed (in that order: a record never
    points at a file that is not there)."""
    preset = task.preset
    key = keys.output_key(task.job_id, task.job.stem, preset.id, preset.extension)
    size = path.stat().st_size
    converted.put_file(key, path, preset.media_type)
    return task.completed(key, size, result)


def convert(
    ffmpeg: FFmpeg,
    uploads: Storage,
    converted: Storage,
    task: OutputTask,
    limits: Limits,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    segment_seconds: float = 0.0,
) -> OutputRecord | SegmentPlan:
    """Fetch and probe the original, encode, check the result, publish it. A long video is split into
    pieces instead (once per job, whichever of its video formats comes first) and the plan returned:
    the caller queues the pieces."""
    if segment_seconds > 0 and task.preset.recipe is not None:  # the pieces were cut from the checked original
        plan = segments.load_plan(uploads, task.job_id)  # split already: no need to fetch the original
        if plan is not None and plan.count > 1:
            task.probed(plan.source)
            task.preset.check_source(plan.source)
            return task.segmented(plan)
    check_source(uploads, task)
    with uploads.local_path(task.job.source_key, workdir) as source_path:
        if source_path.stat().st_size != task.job.source_size:  # replaced between the check and the fetch
            raise SourceReplaced
        facts = inspect(ffmpeg, task, source_path, limits)
        if segments.wants_segments(task.preset, facts.info, segment_seconds):
            spliced = any((r := PRESETS[f].recipe) is not None and r.spliced_sound for f in task.job.formats)
            split = segments.split(
                ffmpeg,
                source_path,
                facts,
                workdir,
                segment_seconds,
                timeout=timeout,
                cancel=cancel,
                sound_in_parts=spliced,
            )
            if split.plan.count > 1:
                segments.store_split(uploads, task.job_id, split)
                return task.segmented(split.plan)
        output = encode(ffmpeg, task, source_path, facts, limits, workdir, timeout=timeout, cancel=cancel)
    return publish(converted, task, output, check_output(ffmpeg, output))
