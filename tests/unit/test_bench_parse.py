"""bench/run.py reads the SSIM of each output from FFmpeg's log: the parsing, on logs FFmpeg 7.0 wrote."""

from __future__ import annotations

import pytest

from bench.run import parse_ssim

# The end of `ffmpeg -i out.mp4 -i source.mp4 -filter_complex "...[out][ref]ssim" -f null -` (log level info).
SSIM_LOG = """\
Stream mapping:
  Stream #0:0 (h264) -> format:default
  Stream #1:0 (hevc) -> scale:default
  ssim:default -> Stream #0:0 (wrapped_avframe)
Output #0, null, to 'pipe:':
  Stream #0:0: Video: wrapped_avframe, yuv420p(progressive), 1920x1080 [SAR 1:1 DAR 16:9], q=2-31, 200 kb/s, 25 fps
[Parsed_ssim_1 @ 0x7f4110010400] SSIM Y:0.993144 (21.639551) U:0.992766 (21.406115) V:0.994011 (22.226784) \
All:0.993226 (21.691433)
[out#0/null @ 0x1678ee40] video:54KiB audio:0KiB subtitle:0KiB other streams:0KiB global headers:0KiB muxing \
overhead: unknown
"""


def test_the_all_value_of_the_summary_line() -> None:
    assert parse_ssim(SSIM_LOG) == pytest.approx(0.993226)


def test_identical_pictures_score_one_with_an_infinite_db_value() -> None:
    line = "[Parsed_ssim_3 @ 0x7fde10010d80] SSIM Y:1.000000 (inf) U:1.000000 (inf) V:1.000000 (inf) All:1.000000 (inf)"
    assert parse_ssim(line) == 1.0


def test_the_last_summary_when_a_log_has_several() -> None:
    second = "[Parsed_ssim_7 @ 0x7f00e4] SSIM Y:0.945028 (12.5) U:0.920035 (10.9) V:0.958659 (13.8) All:0.943135 (12.4)"
    assert parse_ssim(SSIM_LOG + second + "\n") == pytest.approx(0.943135)


@pytest.mark.parametrize("log", ["", SSIM_LOG.split("[Parsed_ssim_1")[0], "[Parsed_ssim_1 @ 0x1] SSIM Y:0.99 (20.1)"])
def test_a_log_without_a_summary_is_an_error_not_a_score(log: str) -> None:
    with pytest.raises(ValueError, match="no SSIM summary"):
        parse_ssim(log)
