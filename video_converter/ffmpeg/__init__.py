"""FFmpeg: finding the binaries, building and running argument lists, parsing what they print."""

from .errors import (
    ConversionCancelled,
    ConversionTimeout,
    FFmpegError,
    FFmpegNotFound,
    FrameTooLarge,
    InvalidMedia,
    LimitExceeded,
    MemoryLimitExceeded,
    OutputTooLarge,
)
from .locate import ffmpeg_path, ffprobe_path
from .runner import FFmpeg

__all__ = [
    "ConversionCancelled",
    "ConversionTimeout",
    "FFmpeg",
    "FFmpegError",
    "FFmpegNotFound",
    "FrameTooLarge",
    "InvalidMedia",
    "LimitExceeded",
    "MemoryLimitExceeded",
    "OutputTooLarge",
    "ffmpeg_path",
    "ffprobe_path",
]
