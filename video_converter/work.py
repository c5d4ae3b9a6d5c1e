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

from .presets import PRESETS


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


def divide(job_id: str, formats: list[str]) -> list[Convert]:
    """How a job is divided into messages: the renditions of one decode group (the MP4 sizes) in one,
    converted together from one decode; every other format (WebM, MP3, GIF, thumbnail) in its own, so
    workers convert them side by side. A group's message goes where its first format was asked for."""
    groups: dict[str, list[str]] = {}
    order: list[list[str]] = []
    for format_id in formats:
        recipe = PRESETS[format_id].recipe
        group = recipe.decode_group if recipe is not None else None
        if group is None:
            order.append([format_id])
        elif group in groups:
            groups[group].append(format_id)
        else:
            groups[group] = [format_id]
            order.append(groups[group])
    return [Convert(job_id, tuple(members)) for members in order]
