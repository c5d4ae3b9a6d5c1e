"""The work a queue message names, as types, with the message body they are sent as and how a job is
divided into them.

- ``Convert``: outputs of one job from the original, in one run. One format, or the renditions of one
  decode group (the MP4 sizes), converted together from one decode.
- For a long video, split into pieces (``video_converter.segmenting``), the same formats' ``Piece``
  (one piece of the picture), ``SoundPart`` (one part of the sound) and, per output, its ``Join``.
- ``Import``: fetch a job's original from its link, then queue its conversions (a notice-like body
  ``{"job_id", "step": "import"}``).
- ``Notify``: not conversion work: the delivery of a finished job's webhook (``video_converter.webhooks``),
  sent by the worker that made its last output final, so no conversion waits for a receiver.

Bodies are flat string maps, as SQS and the SQLite queue carry them: ``{"job_id", "format", "with"}``
plus ``"segment": n``, ``"step": "audio", "part": n`` or ``"step": "assemble"``; a notice is
``{"job_id", "step": "webhook"}``. Bodies written by earlier versions still read: an ``"audio"`` step
without a part is part 0 (the sound was one part).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum

from .presets import PRESETS
from .queues.base import Queue


@dataclass(frozen=True)
class Convert:
    """Outputs converted from the original in one run (several: renditions of one decode)."""

    job_id: str
    formats: tuple[str, ...]


@dataclass(frozen=True)
class Piece:
    """Piece ``index`` of a long video's picture, encoded for each of ``formats`` from one decode."""

    job_id: str
    formats: tuple[str, ...]
    index: int

    def label(self, parts: int) -> str:
        """What a person reads in a failure: "Part 3 of 12", where ``parts`` is how many pieces there are."""
        return f"Part {self.index + 1} of {parts}"


@dataclass(frozen=True)
class SoundPart:
    """Part ``index`` of a long video's sound, encoded once for the formats that encode it alike."""

    job_id: str
    formats: tuple[str, ...]
    index: int

    def label(self, parts: int) -> str:
        return "The sound" if parts == 1 else f"Sound part {self.index + 1} of {parts}"


@dataclass(frozen=True)
class Join:
    """The join of one output's encoded pieces and sound into the file people download."""

    job_id: str
    format_id: str

    @property
    def formats(self) -> tuple[str, ...]:
        return (self.format_id,)

    def label(self, parts: int) -> str:
        return "Joining the parts"


@dataclass(frozen=True)
class Notify:
    """Deliver the job's webhook: its outputs are all final."""

    job_id: str


@dataclass(frozen=True)
class Import:
    """Fetch the job's original from the link it was created with (``video_converter.imports``), then
    queue its conversions."""

    job_id: str


Work = Convert | Piece | SoundPart | Join  # conversion work: it names outputs
SegmentWork = Piece | SoundPart | Join
Task = Work | Notify | Import  # what a message names
NOTIFY_STEP = "webhook"
IMPORT_STEP = "import"


def alone(work: Work, format_id: str) -> Work:
    """The same work for one of its formats only."""
    return work if isinstance(work, Join) else dataclasses.replace(work, formats=(format_id,))


def to_body(work: Task) -> dict[str, str]:
    if isinstance(work, Notify):
        return {"job_id": work.job_id, "step": NOTIFY_STEP}
    if isinstance(work, Import):
        return {"job_id": work.job_id, "step": IMPORT_STEP}
    first, *rest = work.formats
    body = {"job_id": work.job_id, "format": first}
    if rest:
        body["with"] = ",".join(rest)
    if isinstance(work, Piece):
        body["segment"] = str(work.index)
    elif isinstance(work, SoundPart):
        body |= {"step": "audio", "part": str(work.index)}
    elif isinstance(work, Join):
        body["step"] = "assemble"
    return body


def from_body(body: dict[str, str]) -> Task | None:
    """The work a body names, or None when it is malformed."""
    job_id, first = body.get("job_id"), body.get("format")
    if body.get("step") == NOTIFY_STEP:
        return Notify(job_id) if job_id and set(body) == {"job_id", "step"} else None
    if body.get("step") == IMPORT_STEP:
        return Import(job_id) if job_id and set(body) == {"job_id", "step"} else None
    segment, part, step = body.get("segment"), body.get("part"), body.get("step")
    if not job_id or not first or any(n is not None and not n.isdigit() for n in (segment, part)):
        return None
    formats = (first, *body["with"].split(",")) if body.get("with") else (first,)
    if len(set(formats)) != len(formats) or len(formats) > len(PRESETS):
        return None  # a repeated format, or more formats than there are
    if step is None and part is None:
        return Convert(job_id, formats) if segment is None else Piece(job_id, formats, int(segment))
    if step == "audio" and segment is None:
        return SoundPart(job_id, formats, int(part or 0))
    if step == "assemble" and segment is None and part is None and len(formats) == 1:
        return Join(job_id, first)
    return None


# The formats from the cheapest to the dearest, as a job's messages are sent: the shortest work first
# gives every output its earliest finish on average, and the quick outputs (a thumbnail is one frame, an
# MP3 decodes only the sound, a GIF at most GIF_MAX_SECONDS of the picture) never wait for a long encode.
# The whole job is not later for it: the quick work is seconds, done while the long encodes run.
CHEAPEST_FIRST = ("thumbnail", "mp3", "gif", "storyboard", "360p", "480p", "720p", "1080p", "hls", "webm")


class Priority(IntEnum):
    """How soon a message goes, between jobs the queue serves alike (``Queue.send``): higher first."""

    LONG = 0  # an encode of the picture: a whole video format, or a piece of one
    QUICK = 1  # seconds of work that makes an output (or the job's webhook) ready


def priority(task: Task) -> Priority:
    """Quick: the outputs that are not a video encode, a join (a copy of encoded parts) and a webhook."""
    if isinstance(task, Notify | Join):
        return Priority.QUICK
    if isinstance(task, Convert) and not any(PRESETS[f].encodes_video for f in task.formats):
        return Priority.QUICK
    return Priority.LONG


def send(queue: Queue, task: Task, owner: str | None) -> None:
    """Queue ``task`` in its job's group, as its job's ``owner``'s, with its priority."""
    queue.send(to_body(task), group=task.job_id, owner=owner or "", priority=priority(task))


def _cost_rank(work: Convert) -> int:
    return min(CHEAPEST_FIRST.index(f) if f in CHEAPEST_FIRST else len(CHEAPEST_FIRST) for f in work.formats)


def divide(job_id: str, formats: list[str]) -> list[Convert]:
    """How a job is divided into messages, in the order they are sent: the renditions of one decode
    group (the MP4 sizes) in one, converted together from one decode; every other format (WebM, MP3,
    GIF, thumbnail) in its own, so workers convert them side by side; the cheapest first
    (``CHEAPEST_FIRST``)."""
    groups: dict[str, list[str]] = {}
    order: list[list[str]] = []
    for format_id in formats:
        group = PRESETS[format_id].decode_group
        if group is None:
            order.append([format_id])
        elif group in groups:
            groups[group].append(format_id)
        else:
            groups[group] = [format_id]
            order.append(groups[group])
    return sorted((Convert(job_id, tuple(members)) for members in order), key=_cost_rank)
