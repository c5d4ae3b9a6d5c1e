"""Errors carry what a person needs: the exit code and the last lines FFmpeg printed."""

from __future__ import annotations


class FFmpegNotFound(RuntimeError):
    pass


class FFmpegError(RuntimeError):
    """FFmpeg exited non-zero."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.summary = message  # the sentence without FFmpeg's own words (exit code, last lines)
        detail = f" (exit code {returncode})" if returncode is not None else ""
        tail = f": {stderr_tail}" if stderr_tail else ""
        super().__init__(f"{message}{detail}{tail}")


class InvalidMedia(FFmpegError):
    """The input is not something FFmpeg can read: retrying will not help."""


class ConversionTimeout(FFmpegError):
    pass


class ConversionCancelled(RuntimeError):
    """The worker is shutting down; the message goes back to the queue."""


class LimitExceeded(FFmpegError):
    """FFmpeg hit one of its bounds (memory, output size): the same input would hit it again."""


class MemoryLimitExceeded(LimitExceeded):
    pass


class OutputTooLarge(LimitExceeded):
    pass


class FrameTooLarge(LimitExceeded):
    """A decoder refused a frame over the pixel limit (-max_pixels) that the probe could not see."""
