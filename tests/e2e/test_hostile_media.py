"""Hostile media, crafted with FFmpeg in each test, through the real conversion path (process_message).

Each must end quickly with a clear refusal (MediaRejected, no retry) or a bounded, correct conversion,
while a sampler watches the resident memory of the FFmpeg processes run on the file under test.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Env, MakeEnv, frames_of, probe_file
from tests.e2e.server import Server
from video_converter.conversion import NOT_CONVERTED
from video_converter.ffmpeg import FFmpeg, MemoryLimitExceeded, ffmpeg_path
from video_converter.model import OutputRecord, OutputStatus
from video_converter.outcome import Action
from video_converter.presets import PRESETS

pytestmark = pytest.mark.e2e

MEMORY_MB = 1024  # tighter than the 3072 MB default, so a breach would show on this small machine


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_path(), "-hide_banner", "-v", "error", "-y", *args], check=True, timeout=60)


# --- crafting -----------------------------------------------------------------------------------------


def huge_gif(path: Path) -> Path:
    """A 1 KB GIF whose logical screen (bytes 6-9 of the header) says 16000x16000."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=16x16:rate=5:duration=1", "-f", "gif", str(path))
    data = bytearray(path.read_bytes())
    data[6:10] = (16000).to_bytes(2, "little") * 2
    path.write_bytes(bytes(data))
    return path


def timestamp_gap(path: Path, gap_seconds: float) -> Path:
    """Two seconds of frames with a jump of ``gap_seconds`` in the middle (timestamps passed through)."""
    jump = f"setpts='if(gte(N,25),PTS+{gap_seconds}/TB,PTS)'"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2", "-vf", jump,
        "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


def empty_edit_list(path: Path, clip: Path, offset: float) -> Path:
    """The clip's audio at 0 and its video behind an empty edit of ``offset`` seconds."""
    ffmpeg(
        "-i", str(clip), "-itsoffset", str(offset), "-i", str(clip),
        "-map", "0:a", "-map", "1:v", "-c", "copy", "-use_editlist", "1", str(path),
    )  # fmt: skip
    return path


def tiny_frame_rate(path: Path) -> Path:
    """0.001 fps: three frames over 50 minutes."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=1/1000:duration=3000",
        "-c:v", "libx264", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


def many_channels(path: Path, channels: int = 64) -> Path:
    tones = "|".join(f"0.01*sin({200 + 10 * n}*2*PI*t)" for n in range(channels))
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc=exprs={tones}:d=1", "-c:a", "pcm_s16le", str(path))
    return path


def sample_count_bomb(path: Path, samples: int = 89_000_000) -> Path:
    """A one-frame 160x120 MP4 (~5 KB) whose sample tables, one stts, stsc and stsz entry each, say the
    frame is ``samples`` frames of one constant size: a demuxer building the index takes 24 bytes a
    sample (2.1 GB for 89 million)."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-frames:v", "1",
        "-c:v", "libx264", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    data = bytearray(path.read_bytes())
    _declare_samples(data, 0, len(data), samples)
    path.write_bytes(bytes(data))
    return path


def _declare_samples(data: bytearray, start: int, end: int, samples: int) -> None:
    """Rewrite the sample count of every stts/stsc/stsz box between ``start`` and ``end`` (boxes nest)."""
    offsets = {b"stts": 16, b"stsc": 20, b"stsz": 16}  # the count in each table's first (only) entry
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            _declare_samples(data, start + 8, start + size, samples)
        elif kind in offsets:
            struct.pack_into(">I", data, start + offsets[kind], samples)
        start += size


def metadata_bomb(path: Path, megabytes: int = 16) -> Path:
    """A one-second Matroska file whose comment tag is ``megabytes`` MB of U+0001 (six bytes each once
    escaped in JSON), set with -map_metadata from a generated ffmetadata file (an argument could not
    hold it)."""
    metadata = path.with_suffix(".ffmetadata")
    metadata.write_bytes(b";FFMETADATA1\ncomment=" + b"\x01" * (megabytes * 1024 * 1024) + b"\n")
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1", "-i", str(metadata),
        "-map", "0", "-map_metadata", "1", "-c:v", "libx264", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


def growing_stream(path: Path, tmp: Path, second: str = "1920x1080") -> Path:
    """An MP4 of two H.264 elementary streams one after the other: one second at 160x120, then five
    frames at ``second``, whose in-band SPS the decoder meets partway through. The container, and so
    the probe, say 160x120."""
    parts = []
    for size, seconds in (("160x120", 1), (second, 0.2)):
        part = tmp / f"part-{size}.h264"
        ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "h264", str(part),
        )  # fmt: skip
        parts.append(part.read_bytes())
    joined = tmp / "joined.h264"
    joined.write_bytes(b"".join(parts))
    ffmpeg("-f", "h264", "-framerate", "25", "-i", str(joined), "-c", "copy", str(path))
    return path


# --- the sampler ----------------------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, int, bytes]]:
    """Every process now: pid -> (parent pid, resident KB, argv as NUL-separated bytes)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
        vmrss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        if ppid:
            found[int(entry)] = (int(ppid.group(1)), int(vmrss.group(1)) if vmrss else 0, argv)
    return found


def _tree_rss_mb(names: bytes | int) -> int:
    """Resident memory of the processes whose argv contains ``names`` (the ffprobe and FFmpeg runs on the
    input under test), or of the process with that pid (a server), and of everything they start. Other
    work of this pytest process (another thread's FFmpeg, a test server's workers) is not counted."""
    processes = _processes()
    if isinstance(names, int):
        tree = {names} & set(processes)
    else:
        tree = {pid for pid, (_, _, argv) in processes.items() if names in argv and pid != os.getpid()}
    frontier = set(tree)
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in processes.items() if ppid in frontier and pid not in tree}
        tree |= frontier
    return sum(processes[pid][1] for pid in tree) // 1024


@contextmanager
def peak_rss(names: Path | int) -> Iterator[list[int]]:
    """Samples, every 20 ms, the resident memory of the process trees of the FFmpeg (and ffprobe) runs
    whose argv names ``names`` (the input file, or a folder only this test's runs read from), or of the
    process with that pid and its children; yields [peak MB], filled in as it runs."""
    peak = [0]
    done = threading.Event()
    marker = names if isinstance(names, int) else os.fsencode(names)

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss_mb(marker))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


# --- the conversion path --------------------------------------------------------------------------------


def convert(env: Env, source: Path, formats: list[str]) -> dict[str, tuple[OutputRecord, float, int]]:
    """A job for ``source``, each format converted once (attempt 1) by ``env.ffmpeg``: its record, the
    seconds it took and the peak RSS of the FFmpeg runs on the job's files."""
    job_id = env.job(source, formats, source.name)
    results = {}
    for format_id in formats:
        started = time.monotonic()
        with peak_rss(env.rt.scratch.path) as peak:  # where the runtime puts the files FFmpeg reads
            outcome = env.convert(job_id, format_id)
        assert outcome.action is Action.ACK, outcome  # done or failed for good: never a retry
        record = env.record(job_id, format_id)
        seconds = time.monotonic() - started
        results[format_id] = (record, seconds, peak[0])
        if os.environ.get("REPORT_PEAKS"):  # REPORT_PEAKS=1 pytest -s: the figures for the issue
            print(f"{source.name} -> {format_id}: {record.status.value}, {seconds:.1f} s, peak {peak[0]} MB")
    return results


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env(ffmpeg_memory_mb=MEMORY_MB)


# --- refused at once --------------------------------------------------------------------------------------


def test_tiny_gif_declaring_16000x16000_is_refused_before_any_encode(env: Env, tmp_path: Path) -> None:
    source = huge_gif(tmp_path / "bomb.gif")
    assert source.stat().st_size < 2000
    results = convert(env, source, ["gif", "720p", "thumbnail"])
    for record, seconds, peak in results.values():
        assert record.status is OutputStatus.FAILED
        assert record.error == NOT_CONVERTED
        assert env.job_error().startswith("This video is 16000x16000 pixels; the limit is 8K (7680x4320).")
        # Failed for good on the first attempt, no retry; the outputs after the first fail fast (probed once).
        assert record.attempts == (1 if record.format == "gif" else 0)
        assert seconds < 5 and peak < MEMORY_MB


def test_video_behind_a_ten_hour_empty_edit_list_is_refused(env: Env, make_clip, tmp_path: Path) -> None:
    source = empty_edit_list(tmp_path / "edit.mp4", make_clip(seconds=2, size="160x120"), 36000)
    (record, seconds, _), *_ = convert(env, source, ["360p"]).values()
    assert record.status is OutputStatus.FAILED and seconds < 5
    assert record.error == NOT_CONVERTED
    assert env.job_error().startswith("The video track starts 10 h after the audio track")


def test_ten_hour_timestamp_gap_is_over_the_duration_limit(env: Env, tmp_path: Path) -> None:
    source = timestamp_gap(tmp_path / "gap10h.mp4", 36000)
    (record, seconds, _), *_ = convert(env, source, ["gif"]).values()
    assert record.status is OutputStatus.FAILED and seconds < 5
    assert record.error == NOT_CONVERTED
    assert env.job_error().startswith("This file lasts 10 h 0 min; the limit is 4 h.")


# --- bounded, correct conversions ----------------------------------------------------------------------------


def test_one_hour_timestamp_gap_costs_its_frames_not_an_hour_of_copies(env: Env, tmp_path: Path) -> None:
    source = timestamp_gap(tmp_path / "gap1h.mp4", 3600)
    results = convert(env, source, ["360p", "webm", "gif", "thumbnail"])
    for format_id, (record, seconds, peak) in results.items():
        assert record.status is OutputStatus.COMPLETED, (format_id, record.error)
        assert seconds < 20 and peak < MEMORY_MB, (format_id, seconds, peak)
    assert frames_of(env.output_file(results["360p"][0], tmp_path)) <= 50  # 50 frames in, none invented
    assert frames_of(env.output_file(results["webm"][0], tmp_path)) <= 50
    gif = results["gif"][0]
    assert gif.duration is not None and gif.duration <= 10.0  # the GIF stops at its 10 s


def test_a_thousandth_of_a_frame_per_second_gives_small_bounded_outputs(env: Env, tmp_path: Path) -> None:
    source = tiny_frame_rate(tmp_path / "slow.mp4")
    results = convert(env, source, ["360p", "gif"])
    for format_id, (record, seconds, peak) in results.items():
        assert record.status is OutputStatus.COMPLETED, (format_id, record.error)
        assert seconds < 20 and peak < MEMORY_MB, (format_id, seconds, peak)
    assert frames_of(env.output_file(results["360p"][0], tmp_path)) <= 3
    gif = env.output_file(results["gif"][0], tmp_path)
    assert frames_of(gif) <= 120  # 10 s at 12 fps, not 50 minutes of repeats held by palettegen
    assert float(probe_file(gif)["format"]["duration"]) <= 10.0


def test_sixty_four_channel_wav_gives_a_stereo_mp3(env: Env, tmp_path: Path) -> None:
    source = many_channels(tmp_path / "channels.wav")
    assert probe_file(source)["streams"][0]["channels"] == 64
    (record, seconds, peak), *_ = convert(env, source, ["mp3"]).values()
    assert record.status is OutputStatus.COMPLETED, record.error
    assert seconds < 10 and peak < MEMORY_MB
    stream = probe_file(env.output_file(record, tmp_path))["streams"][0]
    assert (stream["channels"], stream["channel_layout"]) == (2, "stereo")


def test_high_frame_rate_is_capped_at_sixty_by_dropping_frames(env: Env, make_clip, tmp_path: Path) -> None:
    source = make_clip(seconds=1, size="160x120", rate=120, audio=False)
    (record, _, _), *_ = convert(env, source, ["360p"]).values()
    assert record.status is OutputStatus.COMPLETED, record.error
    assert 55 <= frames_of(env.output_file(record, tmp_path)) <= 61


# --- refused while decoding ---------------------------------------------------------------------------------


def test_a_stream_that_grows_past_the_pixel_limit_partway_fails_with_a_sentence(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    """The probe sees 160x120; the decoder meets 1920x1080 a second in and refuses it (-max_pixels), so the
    output fails for good, saying why, instead of decoding frames the limit was set against."""
    env = make_env(ffmpeg_memory_mb=MEMORY_MB, max_pixels=640 * 480)
    source = growing_stream(tmp_path / "grows.mp4", tmp_path)
    assert [(s["width"], s["height"]) for s in probe_file(source)["streams"]] == [(160, 120)]
    (record, seconds, peak), *_ = convert(env, source, ["360p"]).values()
    assert record.status is OutputStatus.FAILED and record.attempts == 1
    assert record.error == "This video changes to 1920x1080 pixels partway through; the limit is 307200 pixels."
    assert seconds < 20 and peak < MEMORY_MB


# --- the memory bound itself --------------------------------------------------------------------------------


def test_ffmpeg_past_the_checks_is_stopped_by_its_memory_limit(tmp_path: Path) -> None:
    """Were a file to slip past check_media (a container that lies about its size), FFmpeg itself is
    capped: the 16000x16000 canvas needs ~1 GB per frame, over this 512 MB address-space limit."""
    source = huge_gif(tmp_path / "bomb.gif")
    preset = PRESETS["gif"]
    bounded = FFmpeg(memory_mb=512)
    info = bounded.probe(source)
    started = time.monotonic()
    with peak_rss(source) as peak, pytest.raises(MemoryLimitExceeded) as failed:
        bounded.convert(source, tmp_path / "out.gif", preset.output_args(info), max_seconds=preset.max_seconds)
    assert time.monotonic() - started < 10
    assert peak[0] < 512
    assert str(failed.value).startswith("The conversion needed more than the 512 MB memory limit")


def test_output_size_limit_ends_the_conversion_without_retry(env: Env, make_clip) -> None:
    env.ffmpeg = FFmpeg(memory_mb=MEMORY_MB, max_output_bytes=20_000)
    source = make_clip(seconds=2, size="320x240")
    (record, _, _), *_ = convert(env, source, ["360p"]).values()
    assert record.status is OutputStatus.FAILED and record.attempts == 1
    assert record.error is not None and record.error.startswith("The converted file reached the 20000 byte size limit")


# --- privacy ----------------------------------------------------------------------------------------------


def _tags(probed: dict[str, Any]) -> dict[str, str]:
    tags = dict(probed["format"].get("tags") or {})
    for stream in probed["streams"]:
        tags.update(stream.get("tags") or {})
    return {k.lower(): str(v) for k, v in tags.items()}


def test_outputs_carry_no_location_comment_or_chapters_of_the_source(env: Env, make_clip, tmp_path: Path) -> None:
    source = make_clip(
        "private.mp4",
        seconds=1,
        size="160x120",
        extra=("-metadata", "location=+48.8566+002.3522/", "-metadata", "comment=secret", "-metadata", "title=secret"),
    )
    assert {"location", "comment"} <= set(_tags(probe_file(source)))
    results = convert(env, source, list(PRESETS))
    for format_id, (record, _, _) in results.items():
        assert record.status is OutputStatus.COMPLETED, (format_id, record.error)
        probed = probe_file(env.output_file(record, tmp_path))
        tags = _tags(probed)
        assert not {"location", "location-eng", "comment", "title"} & set(tags), (format_id, tags)
        assert not any("secret" in v or "48.8566" in v for v in tags.values()), (format_id, tags)
        assert not probed.get("chapters")


# --- probes of uploads, in the API's request threads ---------------------------------------------------------


def upload(server: Server, source: Path, name: str) -> httpx.Response:
    with source.open("rb") as fh:
        files = {"file": (name, fh, "video/mp4")}
        return httpx.post(f"{server.url}/api/jobs", files=files, data={"formats": ["360p"]}, timeout=60)


def test_four_concurrent_sample_count_bombs_are_refused_with_the_server_under_1_gb(tmp_path: Path) -> None:
    """Each 5 KB file once cost its ffprobe 2.1 GB: the probe's own memory cap makes the index allocation
    fail at once, at most two probes run at a time, and the declared 89 million frames are refused."""
    bomb = sample_count_bomb(tmp_path / "bomb.mp4")
    assert bomb.stat().st_size < 10_000
    with Server(tmp_path / "data", workers=0) as server:
        assert server.proc is not None
        with peak_rss(server.proc.pid) as peak, ThreadPoolExecutor(4) as pool:
            started = time.monotonic()
            responses = list(pool.map(lambda n: upload(server, bomb, f"bomb{n}.mp4"), range(4)))
            seconds = time.monotonic() - started
    if os.environ.get("REPORT_PEAKS"):
        print(f"4 sample-count bombs: {seconds:.1f} s, server tree peak {peak[0]} MB")
    for response in responses:
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("This 5.4 KiB file declares 89000000 frames of 160x120 pixels")
    assert peak[0] < 1024 and seconds < 20


def test_a_huge_tag_is_never_printed_and_the_upload_is_accepted(tmp_path: Path) -> None:
    """16 MB of U+0001 in a tag was ~100 MB of JSON for the server to read and parse; the probe asks for
    no tag but ``rotate``, so the file is what it is, a valid one-second video, and is accepted."""
    bomb = metadata_bomb(tmp_path / "tagged.mkv")
    with Server(tmp_path / "data", workers=0) as server:
        assert server.proc is not None
        before = _tree_rss_mb(server.proc.pid)
        with peak_rss(server.proc.pid) as peak:
            response = upload(server, bomb, "tagged.mkv")
    grown = peak[0] - before
    if os.environ.get("REPORT_PEAKS"):
        print(f"16 MB tag: server tree {before} MB before, peak {peak[0]} MB (+{grown} MB)")
    assert response.status_code == 201, response.text
    assert grown < 200
