"""How long a job will take, from the start: the work each of its messages asks for (``budget.job_work``:
minutes of 1080p30, from the probed duration and size) times the measured speed of its kind of encode
on this machine, the messages laid out over the workers in the order the queue hands them out.

Speeds are seconds of wall time per minute of 1080p30 work, per family of encode (the MP4 sizes, which
share one run, WebM, MP3, GIF, the thumbnail), plus a fixed start-up per message (fetch, probe, FFmpeg
starting). ``DEFAULT_RATES`` were measured on the reference machine (2 shared cores); each message a
worker finishes corrects its family's factor (``speeds.json`` in the converted store, in local mode
under DATA_DIR), so the estimate follows this machine, its load and the files people send it.

While the job runs, an output being converted counts what is left of it: its estimate less the time it
has run, blended, as its progress grows, with the pace it has shown (``_left``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ValidationError

from .budget import format_work, job_work
from .model import JobRecord, OutputRecord, OutputStatus, SourceInfo, utcnow
from .output import Output
from .presets import PRESETS, recipes_of, shared_pictures
from .storage import ObjectNotFound, Storage
from .work import divide

log = logging.getLogger(__name__)

SPEEDS_KEY = "speeds.json"
# Seconds of wall time per minute of 1080p30 work (budget.job_work), by family, on the reference machine
# (2 shared cores, WORKERS=2) with real footage: a 55 s 720p trailer to every format took 49 s for the
# MP4 sizes and 164 s for WebM, run side by side. FFmpeg's synthetic test pattern encodes 2-3x faster
# (39 and 150), so a server that converts only such clips learns that within a few jobs.
# The storyboard's is not measured yet: a frame every few seconds from a decode of the whole source, taken
# as the thumbnail's until a run here corrects it.
DEFAULT_RATES = {"h264": 80.0, "webm": 400.0, "mp3": 40.0, "gif": 600.0, "thumbnail": 40.0, "storyboard": 40.0}
STARTUP = 0.3  # seconds of every message: fetch, probe, FFmpeg's start
# How much one finished message moves its family's factor (a running mean over the first few, then this).
LEARNING = 0.3
RELOAD_SECONDS = 30.0  # a reader reads the speeds again at most this often
# A learned factor stays within this of the measured defaults: one odd run (a stalled disk, a paused
# machine) must not make every later estimate absurd.
FACTOR_RANGE = (0.1, 20.0)


def family(format_id: str) -> str:
    """The kind of encode a format is: the MP4 sizes (converted together) are one."""
    return PRESETS[format_id].decode_group or format_id


class Speeds(BaseModel):
    """This machine's correction of ``DEFAULT_RATES``: a factor per family and how many runs it is from."""

    factors: dict[str, float] = {}
    samples: dict[str, int] = {}

    @property
    def calibrated(self) -> bool:
        return bool(self.samples)

    def seconds(self, kind: str, work: float) -> float:
        return self.factors.get(kind, 1.0) * (STARTUP + DEFAULT_RATES.get(kind, DEFAULT_RATES["h264"]) * work)

    def learned(self, kind: str, work: float, observed: float) -> Speeds:
        """These speeds corrected by one run of ``work`` that took ``observed`` seconds."""
        ratio = observed / max(self.seconds(kind, work) / self.factors.get(kind, 1.0), 1e-3)
        count = self.samples.get(kind, 0)
        weight = max(LEARNING, 1.0 / (count + 1))
        old = self.factors.get(kind, 1.0)
        factor = math.exp((1 - weight) * math.log(old) + weight * math.log(max(ratio, 1e-6)))
        low, high = FACTOR_RANGE
        return Speeds(
            factors={**self.factors, kind: min(high, max(low, factor))}, samples={**self.samples, kind: count + 1}
        )


def message_work(job_formats: list[str], formats: tuple[str, ...], source: SourceInfo) -> float:
    """Minutes of 1080p30 work of one message: its formats' encodes and their decode, each distinct
    picture once (sizes the source is too small for are one encode)."""
    seconds = source.duration or 0.0
    work = job_work(job_formats, source, seconds)
    total = sum(work[f] for f in formats if f in work)
    sizes = [f for f in formats if PRESETS[f].recipe is not None]  # a stream's work is counted by job_work
    if len(sizes) > 1:  # the MP4 sizes of one run
        shares = shared_pictures(source, recipes_of([PRESETS[f] for f in sizes]))
        total -= sum(format_work(f, source, seconds) for i, f in enumerate(sizes) if shares[i] != i)
    return total


class SpeedBook:
    """The speeds kept in a store: read (and cached for ``RELOAD_SECONDS``) by the API, corrected by workers.
    ``of`` gives one book per store in a process, so the API sees at once what its own workers learn."""

    _books: dict[int, SpeedBook] = {}
    _books_lock = threading.Lock()

    @classmethod
    def of(cls, store: Storage) -> SpeedBook:
        with cls._books_lock:
            book = cls._books.get(id(store))
            if book is None or book.store is not store:  # an id is reused once its object is gone
                book = cls._books[id(store)] = cls(store)
            return book

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[float, Speeds] | None = None

    def current(self) -> Speeds:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < RELOAD_SECONDS:
                return self._cached[1]
        speeds = self._read()
        with self._lock:
            self._cached = (time.monotonic(), speeds)
        return speeds

    def _read(self) -> Speeds:
        try:
            return Speeds.model_validate_json(self.store.get_bytes(SPEEDS_KEY))
        except ObjectNotFound:
            return Speeds()
        except (ValidationError, ValueError):
            log.warning("%s could not be read; the measured defaults are used", SPEEDS_KEY)
            return Speeds()

    def learn(self, job: JobRecord, formats: tuple[str, ...], source: SourceInfo, observed: float) -> None:
        """One message of ``job`` converting ``formats`` took ``observed`` seconds: correct its family.
        Two workers learning at once may lose one of the two corrections: it is a mean, that is harmless."""
        speeds = self._read().learned(family(formats[0]), message_work(job.formats, formats, source), observed)
        self.store.put_bytes(SPEEDS_KEY, speeds.model_dump_json().encode(), "application/json")
        with self._lock:
            self._cached = (time.monotonic(), speeds)


def learn_from(book: SpeedBook, outputs: list[Output], source: SourceInfo) -> None:
    """The outputs of one message were just published: learn from the time their conversion took (since
    its start, fetch and probe included: what a person waits for). Never fails the conversion."""
    started = outputs[0].record.started_at if outputs else None
    if started is None or not source.duration:
        return
    try:
        book.learn(outputs[0].job, tuple(o.format_id for o in outputs), source, (utcnow() - started).total_seconds())
    except Exception:
        log.exception("the conversion speeds could not be updated")


@dataclass(frozen=True)
class Forecast:
    """Seconds from now until each unfinished output is expected to be ready, and the whole job."""

    outputs: dict[str, float]
    calibrated: bool  # from speeds measured on this machine, not only the defaults

    @property
    def seconds_left(self) -> float:
        return max(self.outputs.values(), default=0.0)


@dataclass(frozen=True)
class _Task:
    formats: tuple[str, ...]
    seconds: float  # what is left of it
    running: bool


def forecast(
    job: JobRecord,
    outputs: list[OutputRecord],
    source: SourceInfo | None,
    speeds: Speeds,
    *,
    workers: int | None,
    segment_seconds: float = 0.0,
    now: datetime | None = None,
) -> Forecast | None:
    """When each unfinished output of ``job`` will be ready, with ``workers`` converting (None: as many
    as there are messages, as Lambda runs them); None when the source is not probed yet. A video longer
    than ``segment_seconds`` (0: never) is converted in pieces, which the workers share."""
    if source is None or not source.duration:
        return None
    records = {out.format: out for out in outputs}
    tasks: list[_Task] = []
    for work in divide(job.job_id, job.formats):
        waiting = tuple(f for f in work.formats if f in records and not records[f].status.finished)
        if waiting:
            cost = speeds.seconds(family(work.formats[0]), message_work(job.formats, work.formats, source))
            tasks += _tasks(waiting, cost, records[waiting[0]], source, segment_seconds, now or utcnow())
    return Forecast(_schedule(tasks, workers), speeds.calibrated)


def _tasks(
    formats: tuple[str, ...],
    cost: float,
    record: OutputRecord,
    source: SourceInfo,
    segment_seconds: float,
    now: datetime,
) -> list[_Task]:
    """What is left of one message's work: itself, or (a long video) its pieces still to encode."""
    duration = source.duration or 0.0
    if PRESETS[formats[0]].recipe is not None and 0 < segment_seconds < duration:
        pieces = math.ceil(duration / segment_seconds)
        left = max(1, math.ceil(pieces * (100 - record.progress) / 100))
        return [_Task(formats, cost / pieces, running=False)] * left
    if record.status is OutputStatus.PROCESSING:
        return [_Task(formats, _left(cost, record, now), running=True)]
    return [_Task(formats, cost, running=False)]


def _left(cost: float, record: OutputRecord, now: datetime) -> float:
    """What is left of a conversion under way: the estimate less the time it has run, blended with the
    pace its progress shows as that progress grows (its pace is the better guide once it is under way)."""
    elapsed = (now - record.started_at).total_seconds() if record.started_at else 0.0
    by_estimate = max(cost - elapsed, cost * (100 - record.progress) / 100 * 0.25)
    if record.progress < 1 or elapsed <= 0:
        return by_estimate
    by_pace = elapsed * (100 - record.progress) / record.progress
    weight = min(1.0, record.progress / 50)
    return weight * by_pace + (1 - weight) * by_estimate


def _schedule(tasks: list[_Task], workers: int | None) -> dict[str, float]:
    """Lay the tasks over the workers as the queue does: the running ones where they are, each waiting one
    (in the order sent) on the worker free first."""
    running = [task for task in tasks if task.running]
    free = [task.seconds for task in running]
    count = max(workers if workers is not None else len(tasks), len(running), 1)
    free += [0.0] * (count - len(free))
    ready = {f: task.seconds for task in running for f in task.formats}
    for task in (task for task in tasks if not task.running):
        slot = min(range(len(free)), key=free.__getitem__)
        free[slot] += task.seconds
        ready.update(dict.fromkeys(task.formats, free[slot]))
    return ready
