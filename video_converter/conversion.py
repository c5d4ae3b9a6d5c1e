"""Converting outputs from the original, as named steps that can each be tested alone: fetch the
original (checking it is the one the job was created with), probe it, keep the outputs it can give,
encode (one output, or several renditions from one decode), check each result, publish each. The
message handler runs them in that order; a long video is split between the probe and the encode
(``segmenting``)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import keys, streams
from .budget import OverBudget, check_budget
from .ffmpeg import FFmpeg, FFmpegError, InvalidMedia
from .ffmpeg.failures import failed_outputs
from .ffmpeg.parse import ProbeFacts
from .limits import Limits, MediaRejected, check_media
from .model import JobRecord, OutputRecord, SourceInfo
from .output import Output
from .presets import Preset, UnsuitableSource, VideoRecipe, pictures_of, pictures_once
from .storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # seconds between progress writes


class SourceReplaced(Exception):
    """The original is not the file the job was created from. Never retried."""

    def __init__(self) -> None:
        super().__init__("The original was replaced after the job was created; upload it again as a new job.")


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


class RenditionsFailed(FFmpegError):
    """Renditions converted together failed in their one run; ``at_fault`` are those whose outputs the
    failure names (empty when it names none of them, or the sound they share)."""

    def __init__(self, cause: FFmpegError, at_fault: frozenset[str]) -> None:
        super().__init__("FFmpeg failed", returncode=cause.returncode, stderr_tail=cause.stderr_tail)
        self.at_fault = at_fault


class SourceRejected(Exception):
    """The original is not media FFmpeg can read, or is over a limit: no output of its job can be made.
    ``str()`` is the job-level sentence, saying what to do."""


NOT_CONVERTED = "Not converted: the original could not be used (the job's error says why)."


def source_problem(exc: Exception) -> str:
    """The one sentence for an unusable original, the same from the API's upload check and a worker: in
    plain words, never FFmpeg's (its exit code and last lines are in the log, not for the person)."""
    if isinstance(exc, OverBudget):  # the sentence says what would fit
        return f"{exc} Nothing was converted."
    if isinstance(exc, MediaRejected):
        return f"{exc} Nothing was converted; upload a video or audio file."
    if isinstance(exc, InvalidMedia) and exc.returncode is not None:  # ffprobe could not read it at all
        log.info("an original was refused: %s", exc)
        return NOT_MEDIA
    summary = exc.summary if isinstance(exc, FFmpegError) else str(exc)
    return f"{summary}, so nothing was converted; choose a video or audio file."


NOT_MEDIA = "This file is not a video or audio file that can be converted; choose a video or audio file."


def inspect(ffmpeg: FFmpeg, outputs: list[Output], source_path: Path, limits: Limits) -> ProbeFacts:
    """Probe the original once and refuse it before any encode if it is over a limit, or if the job's
    formats (all of them, whichever message probes) would cost more work than a job may."""
    try:
        facts = ffmpeg.inspect(source_path)
        for output in outputs:
            output.probed(facts.info)
        check_media(facts, limits)
        check_budget(facts, outputs[0].job.formats, limits)
    except (InvalidMedia, MediaRejected) as exc:
        raise SourceRejected(source_problem(exc)) from exc
    return facts


def suitable(outputs: list[Output], source: SourceInfo) -> list[Output]:
    """The outputs whose format the source can give; the others fail, each with its own reason (naming
    its own format). When none can, UnsuitableSource is raised (every output already failed), for the
    caller to end the attempt as any final failure."""
    reasons = unsuitable([output.preset for output in outputs], source)
    for output in outputs:
        if output.format_id in reasons:
            output.failed(reasons[output.format_id])
    if len(reasons) == len(outputs):
        raise UnsuitableSource(next(iter(reasons.values())))
    return [output for output in outputs if output.format_id not in reasons]


def unsuitable(presets: list[Preset], source: SourceInfo) -> dict[str, str]:
    """Why the source cannot give each of these formats it cannot give (format id -> sentence)."""
    reasons = {}
    for preset in presets:
        try:
            preset.check_source(source)
        except UnsuitableSource as exc:
            reasons[preset.id] = str(exc)
    return reasons


@dataclass(frozen=True)
class Encode:
    """One FFmpeg run over the original for some outputs: its limits, and where progress goes."""

    ffmpeg: FFmpeg
    outputs: list[Output]
    source_path: Path
    facts: ProbeFacts
    limits: Limits
    timeout: float
    cancel: threading.Event | None

    def run(self, args: list[list[str]], paths: list[Path]) -> None:
        """FFmpeg with one output per (arguments, path): the last one is its main output."""
        source, lead = self.facts.info, self.outputs[0].preset
        capped = [o.preset.max_seconds for o in self.outputs if o.preset.max_seconds is not None]
        max_seconds = min(capped) if capped else None
        self.ffmpeg.convert(
            self.source_path,
            paths[-1],
            args[-1],
            input_args=lead.input_args(source),
            duration=min(source.duration, max_seconds or source.duration) if source.duration else None,
            max_seconds=self.limits.input_seconds(self.facts, max_seconds),
            timeout=self.timeout,
            on_progress=progress_writer(self._save_progress),
            cancel=self.cancel,
            more_outputs=list(zip(args[:-1], paths[:-1], strict=True)),
        )

    def _save_progress(self, percent: float) -> None:
        for output in self.outputs:
            output.progressed(percent)


Result = Path | streams.Package  # a file to publish, or a packaged stream's folder


def encode(
    ffmpeg: FFmpeg,
    outputs: list[Output],
    source_path: Path,
    facts: ProbeFacts,
    limits: Limits,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    segment_seconds: int = streams.DEFAULT_SEGMENT_SECONDS,
) -> list[Result]:
    """Run the presets' FFmpeg command into ``workdir``: one output, or several renditions from one
    decode (a stream's too); return each output's file, or its packaged stream. Renditions that are one
    encode (sizes the source is too small for) get one file, named for the size whose picture it is
    (``publish_all`` stores it once)."""
    run = Encode(ffmpeg, outputs, source_path, facts, limits, timeout, cancel)
    finals = [workdir / _own_name(o) for o in outputs]
    if len(outputs) == 1 and outputs[0].preset.stream is None:
        run.run([outputs[0].preset.output_args(facts.info)], finals)
        return list(finals)
    return _encode_together(run, workdir, finals, segment_seconds)


@dataclass(frozen=True)
class _Together:
    """The renditions of one decode: the recipes encoded (each distinct picture once), and for each
    output the indices of the recipes it takes (an MP4 size: its own; a stream: its ladder's)."""

    recipes: list[VideoRecipe]
    takes: list[list[int]]

    @classmethod
    def of(cls, outputs: list[Output], source: SourceInfo) -> _Together:
        """With a stream among them, every rendition has its keyframes on the stream's grid, so the MP4
        sizes the job asks for are the stream's renditions of those sizes, encoded once."""
        return cls(*pictures_of([output.preset for output in outputs], source))


def _files_of(together: _Together, shares: list[int], outputs: list[Output], finals: list[Path]) -> dict[int, Path]:
    """For each encoded picture, the file its MP4 sizes share: the one of the size whose picture it is
    (1080p and 720p of a 720p source: the 720p file), else the first size that takes it."""
    files: dict[int, Path] = {}
    for output, takes, final in zip(outputs, together.takes, finals, strict=True):
        if output.preset.stream is None:
            picture = shares[takes[0]]
            if picture not in files or takes[0] == picture:
                files[picture] = final
    return files


def _encode_together(run: Encode, workdir: Path, finals: list[Path], segment_seconds: int) -> list[Result]:
    """Renditions from one decode (one filter graph splits the picture, so the source is decoded and
    filtered once). Each distinct picture is encoded once (sizes the source is too small for are one
    picture), and the sound once, since it is encoded the same way for all (the MP4 sizes); then each
    rendition is a copy of its picture with that sound, and a stream a packaging of its renditions'
    pictures and that sound: a fraction of a second each."""
    source, outputs = run.facts.info, run.outputs
    together = _Together.of(outputs, source)
    recipes = together.recipes
    if len({tuple(r.audio(source)) for r in recipes}) > 1:  # groups are the MP4 sizes (``decode_group``)
        raise ValueError("Renditions converted together share one sound")
    shares, pictures = pictures_once(source, recipes)
    alone = {i: workdir / f"picture-{recipes[i].size}.nut" for i in pictures}
    args, paths = list(pictures.values()), list(alone.values())
    sound = workdir / "sound.mp4"
    if source.has_audio:
        args.append(recipes[0].sound(source, alone=True))
        paths.append(sound)
    try:
        run.run(args, paths)
    except FFmpegError as exc:
        if type(exc) is not FFmpegError:
            raise  # a limit, a timeout: not one rendition's doing
        named = [list(pictures).index(share) in failed_outputs(exc.stderr_tail) for share in shares]
        at_fault = [any(named[i] for i in takes) for takes in together.takes]
        blamed = frozenset(o.format_id for o, bad in zip(outputs, at_fault, strict=True) if bad)
        raise RenditionsFailed(exc, blamed) from exc
    results: list[Result] = []
    files = _files_of(together, shares, outputs, finals)
    made: set[Path] = set()
    for output, takes in zip(outputs, together.takes, strict=True):
        if output.preset.stream is not None:
            ladder = [(recipes[i], alone[shares[i]]) for i in takes]
            heard = sound if source.has_audio else None
            folder = workdir / output.preset.id
            packaged = streams.package(
                run.ffmpeg, ladder, heard, folder, segment_seconds, timeout=run.timeout, cancel=run.cancel
            )
            results.append(packaged)
            continue
        file = files[shares[takes[0]]]
        results.append(file)
        if file in made:
            continue  # the same encode as an output before it: one file for both
        made.add(file)
        run.ffmpeg.convert(
            alone[shares[takes[0]]],
            file,
            recipes[takes[0]].assembly(source, with_audio=source.has_audio),
            timeout=run.timeout,
            cancel=run.cancel,
            extra_inputs=[([], sound)] if source.has_audio else [],
            trusted=True,
        )
    return results


@contextlib.contextmanager
def fetched_source(uploads: Storage, output: Output, workdir: Path) -> Iterator[Path]:
    """The original in ``workdir``, refused if it is not the file the job was created with.

    On AWS the browser POSTs straight to S3, and S3 cannot stop a second POST with the same (still valid)
    ticket from replacing the original after the job exists; in local mode the upload route refuses a
    used ticket. The size is what the job recorded, so a replacement of another size is caught here,
    before the fetch and after it (one of the same size is not)."""
    check_size(uploads, output.job)
    with uploads.local_path(output.job.source_key, workdir) as path:
        if path.stat().st_size != output.job.source_size:  # replaced between the check and the fetch
            raise SourceReplaced
        yield path


def check_size(uploads: Storage, job: JobRecord) -> None:
    """The original is there, and of the size the job recorded (ObjectNotFound, SourceReplaced)."""
    size = uploads.size(job.source_key)
    if size is None:
        raise ObjectNotFound(job.source_key)
    if size != job.source_size:
        raise SourceReplaced


def check_output(ffmpeg: FFmpeg, path: Path) -> SourceInfo:
    """FFmpeg can exit 0 having written nothing (no frame where it looked): say so, don't store it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidMedia("The conversion produced no output: the source has no frames FFmpeg could decode there")
    try:
        return ffmpeg.probe(path, trusted=True)
    except InvalidMedia as exc:
        raise FFmpegError("The converted file could not be read back", stderr_tail=exc.stderr_tail) from exc


def publish_all(ffmpeg: FFmpeg, converted: Storage, outputs: list[Output], results: list[Result]) -> None:
    """Check and publish each output (``results``, as ``encode`` gave them): a packaged stream as every
    file of it; an output whose file is another's (one encode for both) is stored once: it is completed
    with that file, ``same_as`` its format."""
    files: list[tuple[Output, Path]] = []
    for output, result in zip(outputs, results, strict=True):
        if isinstance(result, streams.Package):
            streams.publish(converted, output, result)
        else:
            files.append((output, result))
    owners = {path: output for output, path in files if path.name == _own_name(output)}
    published: dict[Path, tuple[OutputRecord, SourceInfo]] = {}
    for output, path in sorted(files, key=lambda pair: owners.get(pair[1]) is not pair[0]):
        if path in published:
            record, info = published[path]
            assert record.key is not None and record.size_bytes is not None
            output.completed(record.key, record.size_bytes, info, same_as=owners[path].format_id)
            continue
        info = check_output(ffmpeg, path)
        published[path] = (publish(converted, output, path, info), info)


def _own_name(output: Output) -> str:
    """The output's own file name (``encode`` writes each output's file under it; ``publish_all`` knows
    the output a shared file belongs to by it)."""
    return keys.output_filename(output.job.stem, output.preset.id, output.preset.extension)


def publish(converted: Storage, output: Output, path: Path, result: SourceInfo) -> OutputRecord:
    """Store the output at its key, then mark the record completed (in that order: a record never
    points at a file that is not there)."""
    preset = output.preset
    key = keys.output_key(output.job_id, output.job.stem, preset.id, preset.extension)
    size = path.stat().st_size
    converted.put_file(key, path, preset.media_type)
    return output.completed(key, size, result)
