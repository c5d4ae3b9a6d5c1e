"""Converting one output, as named steps that can each be tested alone.

``OutputTask`` is one (job, format) while a worker holds its message: the records it reads and the
state transitions it writes (started, probed, progressed, completed, failed, requeued, released).
``convert`` runs the steps for one output, or for several renditions of one job together: check the
original is the one the job was created with, fetch it, probe it, encode (one decode feeding every
rendition), check each result, publish each.
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
from .presets import PRESETS, Preset, UnsuitableSource, pictures_once, recipes_of
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


def load_tasks(jobs: JobStore, job_id: str, format_ids: tuple[str, ...]) -> list[OutputTask]:
    """The tasks for a message, leaving out what its job never asked for (none when the job is gone)."""
    try:
        job = jobs.job(job_id)
    except JobNotFound:
        log.warning("message for unknown job %s/%s dropped", job_id, ",".join(format_ids))
        return []
    tasks = []
    for format_id in format_ids:
        preset = PRESETS.get(format_id)
        if preset is None or format_id not in job.formats:
            log.warning("message for unknown format %s/%s dropped", job_id, format_id)
            continue
        tasks.append(OutputTask(jobs, job, preset, jobs.output(job_id, format_id)))
    return tasks


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


def inspect(ffmpeg: FFmpeg, tasks: list[OutputTask], source_path: Path, limits: Limits) -> ProbeFacts:
    """Probe the original once and refuse it before any encode if it is over a limit. Outputs it cannot
    give fail one by one; when none of them can, that is the error (the same sentence for all)."""
    try:
        facts = ffmpeg.inspect(source_path)
        for task in tasks:
            task.probed(facts.info)
        check_media(facts, limits)
    except (InvalidMedia, MediaRejected) as exc:
        raise SourceRejected(source_problem(exc)) from exc
    return facts


def suitable(tasks: list[OutputTask], source: SourceInfo) -> list[OutputTask]:
    """The tasks whose format the source can give; the others fail with the reason. When none can,
    UnsuitableSource is raised, for the caller to record as any final failure."""
    reasons = {}
    for task in tasks:
        try:
            task.preset.check_source(source)
        except UnsuitableSource as exc:
            reasons[task.format_id] = exc
    if len(reasons) == len(tasks):
        raise next(iter(reasons.values()))
    for task in tasks:
        if task.format_id in reasons:
            task.failed(str(reasons[task.format_id]))
    return [task for task in tasks if task.format_id not in reasons]


def encode(
    ffmpeg: FFmpeg,
    tasks: list[OutputTask],
    source_path: Path,
    facts: ProbeFacts,
    limits: Limits,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Run the presets' FFmpeg command into ``workdir``: one output, or several renditions from one
    decode (one filter graph splits the picture, so the source is decoded and filtered once); return
    the outputs' paths. The renditions' sound, encoded the same way for all of them (the MP4 sizes),
    is encoded once too, and copied into each beside its picture."""
    source = facts.info
    finals = [workdir / keys.output_filename(t.job.stem, t.preset.id, t.preset.extension) for t in tasks]
    lead = tasks[0].preset
    max_seconds = min(t.preset.max_seconds or float("inf") for t in tasks)

    def run(args: list[list[str]], outputs: list[Path]) -> None:
        def save(percent: float) -> None:
            for task in tasks:
                task.progressed(percent)

        ffmpeg.convert(
            source_path,
            outputs[-1],
            args[-1],
            input_args=lead.input_args(source),
            duration=min(source.duration, max_seconds) if source.duration else None,
            max_seconds=limits.input_seconds(facts, None if max_seconds == float("inf") else max_seconds),
            timeout=timeout,
            on_progress=progress_writer(save),
            cancel=cancel,
            more_outputs=list(zip(args[:-1], outputs[:-1], strict=True)),
        )

    if len(tasks) == 1:
        run([lead.output_args(source)], finals)
        return finals
    recipes = recipes_of([t.preset for t in tasks])
    if len({tuple(r.audio(source)) for r in recipes}) > 1:  # groups are the MP4 sizes (``decode_group``)
        raise ValueError("Renditions converted together share one sound")
    # Each distinct picture once (sizes the source is too small for are one picture), and the sound
    # once; then each rendition is a copy of its picture with that sound: a fraction of a second.
    shares, pictures = pictures_once(source, recipes)
    alone = {i: workdir / f"picture-{tasks[i].preset.id}.nut" for i in pictures}
    args, outputs = list(pictures.values()), list(alone.values())
    sound = workdir / f"sound.{lead.extension}"
    if source.has_audio:
        args.append(recipes[0].sound(source, alone=True))
        outputs.append(sound)
    run(args, outputs)
    for recipe, share, final in zip(recipes, shares, finals, strict=True):
        ffmpeg.convert(
            alone[share],
            final,
            recipe.assembly(source, with_audio=source.has_audio),
            timeout=timeout,
            cancel=cancel,
            extra_inputs=[([], sound)] if source.has_audio else [],
            trusted=True,
        )
    return finals


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
    tasks: list[OutputTask],
    limits: Limits,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    segment_seconds: float = 0.0,
) -> list[OutputRecord] | SegmentPlan:
    """Fetch and probe the original, encode, check each result, publish it. ``tasks`` are one output,
    or video renditions of one job converted together. A long video is split into pieces instead (once
    per job, whichever of its video formats comes first) and the plan returned: the caller queues the
    pieces."""
    lead = tasks[0]
    video = all(t.preset.recipe is not None for t in tasks)
    if segment_seconds > 0 and video:  # the pieces were cut from the checked original
        plan = segments.load_plan(uploads, lead.job_id)  # split already: no need to fetch the original
        if plan is not None and plan.count > 1:
            for task in tasks:
                task.probed(plan.source)
            for task in suitable(tasks, plan.source):
                task.segmented(plan)
            return plan
    check_source(uploads, lead)
    with uploads.local_path(lead.job.source_key, workdir) as source_path:
        if source_path.stat().st_size != lead.job.source_size:  # replaced between the check and the fetch
            raise SourceReplaced
        facts = inspect(ffmpeg, tasks, source_path, limits)
        tasks = suitable(tasks, facts.info)
        if video and segments.wants_segments(lead.preset, facts.info, segment_seconds):
            spliced = any((r := PRESETS[f].recipe) is not None and r.spliced_sound for f in lead.job.formats)
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
                segments.store_split(uploads, lead.job_id, split)
                for task in tasks:
                    task.segmented(split.plan)
                return split.plan
        outputs = encode(ffmpeg, tasks, source_path, facts, limits, workdir, timeout=timeout, cancel=cancel)
    return [
        publish(converted, task, path, check_output(ffmpeg, path)) for task, path in zip(tasks, outputs, strict=True)
    ]
