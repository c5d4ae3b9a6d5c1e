"""ffmpeg_argv, the pure half of FFmpeg.convert: the command line of one run, checked without running it."""

from __future__ import annotations

from pathlib import Path

from video_converter.ffmpeg.runner import MAX_THREADS, SAFE_INPUT_OPTIONS, TRUSTED_INPUT_OPTIONS, ffmpeg_argv

THREADS = str(MAX_THREADS)
START = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", "-progress", "pipe:1"]


def test_every_input_is_read_through_the_whitelist_and_every_output_is_bounded() -> None:
    argv = ffmpeg_argv(
        "ffmpeg",
        Path("/in/source"),
        [(["-f", "mp4"], Path("/out/a.mp4")), (["-f", "webm"], Path("/out/b.webm"))],
        input_args=["-ss", "2"],
        max_seconds=9.25,
        extra_inputs=[(["-f", "wav"], Path("/in/sound.wav"))],
        max_output_bytes=5000,
    )
    assert argv == [
        *START, "-filter_threads", THREADS,
        *SAFE_INPUT_OPTIONS, "-threads", THREADS, "-ss", "2", "-t", "9.250", "-i", "/in/source",
        *SAFE_INPUT_OPTIONS, "-f", "wav", "-i", "/in/sound.wav",
        "-f", "mp4", "-threads", THREADS, "-fs", "5000", "/out/a.mp4",
        "-f", "webm", "-threads", THREADS, "-fs", "5000", "/out/b.webm",
    ]  # fmt: skip


def test_trusted_runs_admit_the_concat_demuxer_and_no_cap_adds_no_option() -> None:
    argv = ffmpeg_argv("ffmpeg", Path("list.ffconcat"), [([], Path("joined.mp4"))], trusted=True)
    assert argv == [
        *START, "-filter_threads", THREADS,
        *TRUSTED_INPUT_OPTIONS, "-threads", THREADS, "-i", "list.ffconcat",
        "-threads", THREADS, "joined.mp4",
    ]  # fmt: skip
    assert "concat" in TRUSTED_INPUT_OPTIONS[-1].split(",") and "concat" not in SAFE_INPUT_OPTIONS[-1].split(",")


def test_with_a_pixel_limit_every_input_is_decoded_under_it() -> None:
    argv = ffmpeg_argv(
        "ffmpeg",
        Path("/in/source"),
        [([], Path("/out/a.mp4"))],
        extra_inputs=[([], Path("/in/sound.wav"))],
        max_pixels=307200,
    )
    inputs = [n for n, arg in enumerate(argv) if arg == "-i"]
    caps = [n for n, arg in enumerate(argv) if arg == "-max_pixels"]
    assert len(caps) == len(inputs) == 2 and all(argv[n + 1] == "307200" for n in caps)
    assert caps[0] < inputs[0] < caps[1] < inputs[1]
