"""Reading a failed FFmpeg run's last lines (pure functions, tested on captured stderr): whether the same
input with the same settings would fail the same way again, and which outputs of the run failed."""

from __future__ import annotations

import re

# What FFmpeg says when the input or the settings, not the machine, are at fault: an encoder that
# refuses the size or format it is given, an output stream that cannot be set up, data it cannot
# parse. Retrying changes none of these; a crash, a killed process or a full disk says something else.
_CERTAIN = (
    "could not open encoder",
    "error while opening encoder",
    "error initializing output stream",
    "error initializing filter",
    "invalid data found when processing input",
    "not divisible by 2",
    "is not supported",
    "unsupported",
)
_NOT_CERTAIN = ("no space left on device", "cannot allocate memory", "input/output error", "broken pipe")
# FFmpeg 7 prefixes a log line with the part that wrote it: [vost#1:0/libx264], [out#1/mp4], [vf#1:0].
_OUTPUT = re.compile(r"\[(?:vost|aost|ost|out|vf|af)#(\d+)")


def is_certain(stderr_tail: str) -> bool:
    """The run failed for a reason the same input would meet again: no retry can help."""
    text = stderr_tail.lower()
    return any(sign in text for sign in _CERTAIN) and not any(sign in text for sign in _NOT_CERTAIN)


def failed_outputs(stderr_tail: str) -> set[int]:
    """The output files (their index in the run) that the failure's lines name."""
    return {int(number) for number in _OUTPUT.findall(stderr_tail)}
