"""Reading a failed run's stderr: certain failures (no retry can help) and the outputs they name."""

from __future__ import annotations

from pathlib import Path

import pytest

from video_converter.ffmpeg.failures import failed_outputs, is_certain
from video_converter.ffmpeg.parse import tail

DATA = Path(__file__).parent / "data"


def captured(name: str) -> str:
    """What the runner keeps of a captured stderr: its tail, as in FFmpegError.stderr_tail."""
    return tail((DATA / name).read_text().splitlines())


def test_an_encoder_refusing_the_size_is_certain_and_names_its_output() -> None:
    text = captured("stderr_x264_tiny_source.txt")  # x264 asked to encode a 2x1 picture (a 1x1 source)
    assert is_certain(text)
    assert failed_outputs(text) == {0}


@pytest.mark.parametrize(
    "text",
    [
        "[out#0/mp4 @ 0x1] Error writing trailer: No space left on device | Error closing file",
        "[vost#0:0/libx264] Could not open encoder before EOF | No space left on device",
        "Conversion failed!",  # a crash with nothing said
        "[h264 @ 0x1] Cannot allocate memory | [vist#0:0/h264] Error while opening decoder",
        "",
    ],
)
def test_machine_trouble_or_silence_is_not_certain(text: str) -> None:
    assert not is_certain(text)


def test_the_outputs_named_by_a_group_runs_lines() -> None:
    text = "[vost#2:0/libx264] Error while opening encoder | [vf#2:0] Error sending frames | [out#2/nut] Nothing"
    assert failed_outputs(text) == {2}
    assert failed_outputs("[fc#0] Error reinitializing filters | [vist#0:0/h264] decode error") == set()
    assert failed_outputs(captured("stderr_gif_memory_limit.txt")) <= {0}
