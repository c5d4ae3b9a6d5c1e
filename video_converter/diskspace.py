"""Running out of disk space is a wait, not a failure of the work: nothing about the message is wrong.

A storage write that fails with ENOSPC (or a full quota), or an FFmpeg that printed "No space left on
device", hands the message back for later without spending an attempt, and the output's record says
so while it stays queued. An output that never fits (its work fills the disk every time, and frees it
again when the work folder is removed) would wait for ever, so once its job is older than
``GIVE_UP_AFTER`` a full disk counts as an ordinary failure again, attempts and all.
"""

from __future__ import annotations

import errno
from datetime import timedelta

WAITING = "Waiting for disk space on the server."
GIVE_UP_AFTER = timedelta(days=1)

_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# What FFmpeg (and the C library under anything else) prints for those errnos.
_SENTENCES = ("no space left on device", "disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """The error (or one it was raised from or during) is the disk running out of space."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return True
        text = str(exc).lower()
        if any(sentence in text for sentence in _SENTENCES):  # FFmpegError carries FFmpeg's last lines
            return True
        exc = exc.__cause__ or exc.__context__
    return False
