"""FFmpeg.probe / FFmpeg.convert: errors, timeout, cancel, progress, and the safe-input whitelist."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import set_once_exists
from video_converter.ffmpeg import (
    ConversionCancelled,
    ConversionTimeout,
    FFmpeg,
    FFmpegError,
    InvalidMedia,
    LimitExceeded,
    MemoryLimitExceeded,
    OutputTooLarge,
    ffmpeg_path,
    ffprobe_path,
)
from video_converter.ffmpeg.parse import PROBE_ENTRIES

DATA = Path(__file__).parent / "data"


def real() -> FFmpeg:
    return FFmpeg(ffmpeg=ffmpeg_path(), ffprobe=ffprobe_path())


def test_probe_real_clip(make_clip) -> None:
    info = real().probe(make_clip(seconds=1, size="160x120"))
    assert (info.width, info.height) == (160, 120)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.duration == pytest.approx(1.0, abs=0.1)


def test_probe_text_file_is_invalid_media(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(InvalidMedia) as info:
        real().probe(path)
    assert info.value.returncode not in (None, 0)
    assert str(info.value).startswith("This file is not a video or audio file that FFmpeg can read")


def test_probe_missing_file_is_invalid_media(tmp_path: Path) -> None:
    with pytest.raises(InvalidMedia):
        real().probe(tmp_path / "nope.mp4")


def test_probe_file_without_streams_is_invalid_media(fake_binary) -> None:
    ffprobe = fake_binary('echo \'{"streams": [], "format": {"format_name": "mp4"}}\'')
    with pytest.raises(InvalidMedia, match="no video or audio stream"):
        FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe).probe(Path("whatever"))


def test_probe_timeout_is_invalid_media(fake_binary) -> None:
    ffprobe = fake_binary("exec sleep 30")
    started = time.monotonic()
    with pytest.raises(InvalidMedia, match="longer than"):
        FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe).probe(Path("x"), timeout=0.3)
    assert time.monotonic() - started < 5


# --- the safe-input whitelist (security) ---------------------------------------------------------


@pytest.fixture
def segment(tmp_path: Path, make_clip) -> Path:
    return make_clip("seg.ts", seconds=1, size="64x64", audio=False, extra=("-f", "mpegts"))


def hls_playlist(tmp_path: Path, segment: Path) -> Path:
    playlist = tmp_path / "upload.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n"
    )
    return playlist


def ffconcat(tmp_path: Path, segment: Path) -> Path:
    script = tmp_path / "upload.ffconcat"
    script.write_text(f"ffconcat version 1.0\nfile '{segment}'\n")
    return script


@pytest.mark.parametrize("make_input", [hls_playlist, ffconcat], ids=["hls", "ffconcat"])
def test_playlists_that_reference_other_files_are_refused(tmp_path: Path, segment: Path, make_input) -> None:
    crafted = make_input(tmp_path, segment)
    ffmpeg = real()
    with pytest.raises(InvalidMedia) as info:
        ffmpeg.probe(crafted)
    assert "not on whitelist" in info.value.stderr_tail  # refused by the whitelist, not by accident
    out = tmp_path / "out.mp4"
    with pytest.raises(FFmpegError) as failed:
        ffmpeg.convert(crafted, out, ["-c:v", "libx264", "-f", "mp4"], timeout=30)
    assert "not on whitelist" in failed.value.stderr_tail
    assert not out.exists() or out.stat().st_size == 0
    renamed = crafted.rename(crafted.with_name("holiday.mov"))  # whatever the upload is called
    with pytest.raises(InvalidMedia):
        ffmpeg.probe(renamed)


def test_whitelist_still_admits_ordinary_containers(tmp_path: Path, make_clip) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("a.mkv", {}),
        ("b.webm", {"extra": ("-c:v", "libvpx-vp9", "-c:a", "libopus")}),
        ("c.mp3", {"video": False}),
    ]
    for name, kwargs in cases:
        clip = make_clip(name, seconds=0.5, size="64x64", **kwargs)
        assert real().probe(clip).duration


# --- convert --------------------------------------------------------------------------------------


def test_convert_real_with_progress(tmp_path: Path, make_clip) -> None:
    clip = make_clip(seconds=1, size="160x120")
    out = tmp_path / "out.mp3"
    seen: list[float] = []
    real().convert(clip, out, ["-vn", "-c:a", "libmp3lame", "-f", "mp3"], duration=1.0, on_progress=seen.append)
    assert out.stat().st_size > 0
    assert seen and seen[-1] == 100.0


def test_convert_failure_carries_exit_code_and_stderr_tail(fake_binary) -> None:
    ffmpeg = fake_binary('echo "noise" >&2; echo "Unknown encoder \'x265-nope\'" >&2; exit 3')
    with pytest.raises(FFmpegError) as info:
        FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false").convert(Path("in"), Path("out"), [], timeout=10)
    assert type(info.value) is FFmpegError
    assert info.value.returncode == 3
    assert info.value.stderr_tail == "noise | Unknown encoder 'x265-nope'"
    assert str(info.value) == "FFmpeg failed (exit code 3): noise | Unknown encoder 'x265-nope'"


def test_convert_passes_safe_options_before_input(fake_binary, tmp_path: Path) -> None:
    argv_file = tmp_path / "argv"
    ffmpeg = fake_binary(f'for a in "$@"; do echo "$a"; done > {argv_file}')
    FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false").convert(
        Path("/in/put.mp4"), Path("/out.mp4"), ["-f", "mp4"], input_args=["-ss", "1.5"], max_seconds=12.5, timeout=10
    )
    argv = argv_file.read_text().splitlines()
    i = argv.index("-i")
    assert argv[i + 1] == "/in/put.mp4"
    assert argv[argv.index("-protocol_whitelist") + 1] == "file"
    assert argv.index("-protocol_whitelist") < i and argv.index("-format_whitelist") < i
    assert "hls" not in argv[argv.index("-format_whitelist") + 1].split(",")
    assert "concat" not in argv[argv.index("-format_whitelist") + 1].split(",")
    assert argv.index("-ss") < i
    assert argv[argv.index("-t") + 1] == "12.500" and argv.index("-t") < i  # read no more than that
    assert argv[-1] == "/out.mp4" and argv.index("-f") > i
    assert "-fs" not in argv  # no size cap unless asked
    assert "-nostdin" in argv and argv[argv.index("-progress") + 1] == "pipe:1"


def test_convert_timeout_kills_and_raises(fake_binary) -> None:
    ffmpeg = fake_binary('echo "started" >&2; exec sleep 30')
    started = time.monotonic()
    with pytest.raises(ConversionTimeout) as info:
        FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false").convert(Path("in"), Path("out"), [], timeout=1)
    assert time.monotonic() - started < 5
    assert "1 s limit" in str(info.value)
    assert info.value.stderr_tail == "started"


def test_convert_cancel_stops_quickly(fake_binary, tmp_path: Path) -> None:
    running = tmp_path / "ffmpeg-running"
    ffmpeg = fake_binary(f"touch {running}; exec sleep 30")
    cancel = threading.Event()
    cancelled = set_once_exists(running, cancel)  # a cancel while FFmpeg runs
    with pytest.raises(ConversionCancelled):
        FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false").convert(Path("in"), Path("out"), [], timeout=60, cancel=cancel)
    assert cancelled and time.monotonic() - cancelled[0] < 3


def test_convert_already_cancelled(fake_binary) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ConversionCancelled):
        FFmpeg(ffmpeg=fake_binary("exec sleep 30"), ffprobe="/bin/false").convert(
            Path("in"), Path("out"), [], timeout=60, cancel=cancel
        )


def test_convert_feeds_progress_lines(fake_binary) -> None:
    ffmpeg = fake_binary(f"cat {DATA / 'progress.txt'}")
    seen: list[float] = []
    FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false").convert(
        Path("in"), Path("out"), [], duration=4.0, timeout=10, on_progress=seen.append
    )
    assert seen[-1] == 100.0
    assert any(0 < p < 100 for p in seen)
    assert seen == sorted(seen)


def test_convert_timeout_also_stops_a_wrapper_scripts_children(fake_binary) -> None:
    wrapper = fake_binary("sleep 2.5")  # no exec: the real work happens in a child of the script
    started = time.monotonic()
    with pytest.raises(ConversionTimeout):
        FFmpeg(ffmpeg=wrapper, ffprobe="/bin/false").convert(Path("in"), Path("out"), [], timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_errors_name_files_by_role_never_by_server_path(fake_binary, tmp_path: Path) -> None:
    source, output = tmp_path / "uploads" / "job" / "source", tmp_path / "scratch" / "clip_720p.mp4"
    ffmpeg = fake_binary(f'echo "{source}: Invalid data" >&2; echo "could not write {output}" >&2; exit 1')
    with pytest.raises(FFmpegError) as info:
        FFmpeg(ffmpeg=ffmpeg, ffprobe=ffmpeg).convert(source, output, ["-f", "mp4"])
    message = str(info.value)
    assert "input: Invalid data" in message and "could not write output" in message
    assert str(tmp_path) not in message


# --- bounds -----------------------------------------------------------------------------------------


def test_each_ffmpeg_runs_under_an_address_space_limit(fake_binary, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    ffmpeg = fake_binary(f'echo "$(ulimit -v) $MALLOC_ARENA_MAX" > {seen}; for a in "$@"; do echo "$a"; done >> {seen}')
    FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false", memory_mb=700, max_output_bytes=12345).convert(
        Path("in"), Path("out.mp4"), ["-f", "mp4"], timeout=10
    )
    limit, *argv = seen.read_text().splitlines()
    assert limit == f"{700 * 1024} 2"  # KiB, as ulimit reports it; glibc arenas kept few
    assert argv[argv.index("-fs") + 1] == "12345" and argv[-1] == "out.mp4"
    threads = [argv[i + 1] for i, a in enumerate(argv) if a == "-threads"]
    assert len(threads) == 2 and all(1 <= int(t) <= 8 for t in threads)  # decoder and encoder
    assert int(argv[argv.index("-filter_threads") + 1]) <= 8


@pytest.mark.parametrize(
    ("memory_mb", "probe_memory_mb", "applied"), [(600, 512, 512), (300, 512, 300), (None, 400, 400)]
)
def test_the_probe_is_bounded_by_the_lower_of_its_own_and_the_ffmpeg_limit(
    fake_binary, tmp_path: Path, memory_mb: int | None, probe_memory_mb: int, applied: int
) -> None:
    seen = tmp_path / "seen"
    ffprobe = fake_binary(f"ulimit -v > {seen}; cat {DATA / 'probe_mp4_av.json'}")
    bounded = FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe, memory_mb=memory_mb, probe_memory_mb=probe_memory_mb)
    facts = bounded.inspect(Path("in"))
    assert seen.read_text().strip() == str(applied * 1024)
    assert facts.info.width == 320 and facts.video is not None and facts.video.nb_frames == 50


def test_the_probe_asks_for_the_fields_it_reads_only(fake_binary, tmp_path: Path) -> None:
    seen = tmp_path / "argv"
    ffprobe = fake_binary(f'printf "%s\\n" "$@" > {seen}; cat {DATA / "probe_mp4_av.json"}')
    FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe).inspect(Path("in"))
    argv = seen.read_text().splitlines()
    assert argv[argv.index("-show_entries") + 1] == PROBE_ENTRIES
    assert "-show_streams" not in argv and "-show_format" not in argv
    assert "stream_tags=rotate" in PROBE_ENTRIES and "format_tags" not in PROBE_ENTRIES


def test_a_probe_printing_more_than_its_limit_is_killed_and_invalid_media(fake_binary) -> None:
    ffprobe = fake_binary("yes '{\"streams\": []}'")  # prints until stopped
    started = time.monotonic()
    with pytest.raises(InvalidMedia) as info:
        FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe).inspect(Path("in"))
    assert str(info.value).startswith("Describing this file takes more than 1 MiB of text")
    assert time.monotonic() - started < 5


def test_probes_wait_for_a_turn_beyond_the_concurrency_cap(fake_binary, tmp_path: Path) -> None:
    """Of six probes started at once, at most two run at any moment."""
    running, counts = tmp_path / "running", tmp_path / "counts"
    running.mkdir()
    ffprobe = fake_binary(
        f"touch {running}/$$; ls {running} | wc -l >> {counts}; sleep 0.2; rm {running}/$$; "
        f"cat {DATA / 'probe_mp4_av.json'}"
    )
    ffmpeg = FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe, max_concurrent_probes=2)
    threads = [threading.Thread(target=ffmpeg.inspect, args=(Path(f"in{n}"),)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = [int(line) for line in counts.read_text().split()]
    assert len(seen) == 6 and max(seen) <= 2


def test_an_allocation_refused_by_the_limit_is_a_final_error(fake_binary) -> None:
    script = 'echo "[dec:gif] Error submitting packet to decoder: Cannot allocate memory" >&2; '
    script += 'for i in 1 2 3 4 5 6 7 8 9; do echo "cannot decode frame without keyframe" >&2; done; exit 69'
    with pytest.raises(MemoryLimitExceeded) as info:
        FFmpeg(ffmpeg=fake_binary(script), ffprobe="/bin/false", memory_mb=512).convert(Path("in"), Path("out"), [])
    assert isinstance(info.value, LimitExceeded)
    assert str(info.value).startswith("The conversion needed more than the 512 MB memory limit (exit code 69)")


def test_an_output_that_reached_its_size_limit_is_a_final_error(fake_binary, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    ffmpeg = fake_binary(f"head -c 5000 /dev/zero > {out}")  # FFmpeg's -fs stops writing and exits 0
    with pytest.raises(OutputTooLarge, match="reached the 4096 byte size limit"):
        FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false", max_output_bytes=4096).convert(Path("in"), out, [])
    FFmpeg(ffmpeg=ffmpeg, ffprobe="/bin/false", max_output_bytes=10_000).convert(Path("in"), out, [])


def test_from_settings(settings) -> None:
    update = {"ffmpeg_memory_mb": 999, "max_output_bytes": 77, "probe_memory_mb": 300, "max_concurrent_probes": 3}
    ffmpeg = FFmpeg.from_settings(settings.model_copy(update=update))
    assert (ffmpeg.memory_mb, ffmpeg.max_output_bytes, ffmpeg.probe_memory_mb) == (999, 77, 300)


def test_ffmpeg_children_run_without_the_hosts_gconv_modules(fake_binary, tmp_path: Path) -> None:
    """The bundled static FFmpeg crashes on MPEG-TS when its iconv loads the host's gconv modules."""
    seen = tmp_path / "env.txt"
    probed = '{"streams": [{"codec_type": "audio", "codec_name": "aac"}], "format": {}}'
    ffprobe = fake_binary(f"env > {seen}; echo '{probed}'")
    FFmpeg(ffmpeg="/bin/false", ffprobe=ffprobe).probe(Path("x"))
    assert "GCONV_PATH=/nonexistent/gconv" in seen.read_text().splitlines()
