"""Benchmarks with targets: conversion speed per format, and server memory during a large upload.

Run with ``make bench``. Targets are for the reference machine (2 cores); results go to stdout and
``bench-results/latest.json``. Exits non-zero if a target is missed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import make_clip_file  # noqa: E402
from tests.e2e.server import Server  # noqa: E402
from video_converter import segments  # noqa: E402
from video_converter.config import Settings  # noqa: E402
from video_converter.ffmpeg import FFmpeg  # noqa: E402
from video_converter.jobs import JobService  # noqa: E402
from video_converter.presets import PRESETS  # noqa: E402
from video_converter.runtime import build_runtime  # noqa: E402
from video_converter.worker import start_workers, stop_workers  # noqa: E402

# Seconds to convert a 10 s 1280x720 clip with audio, on 2 cores.
SPEED_TARGETS = {
    "1080p": 6.0,
    "720p": 6.0,
    "480p": 4.0,
    "360p": 3.0,
    "webm": 30.0,
    "mp3": 1.5,
    "gif": 4.0,
    "thumbnail": 1.5,
}
UPLOAD_BYTES = 512 * 1024 * 1024
RSS_TARGET_MB = 250  # the API's peak resident memory while receiving UPLOAD_BYTES


SEGMENT_TARGETS = {"cpu_ratio": 1.10, "fan_out_ratio": 0.25, "workers_ratio": 1.10}


@contextlib.contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall time and CPU time (user + system) of the FFmpeg processes started inside the block."""
    result: dict[str, float] = {}
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    yield result
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["wall"] = time.perf_counter() - started
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_job(work: Path, clip: Path, segment_seconds: float) -> float:
    """Seconds for a local runtime with WORKERS=2 to convert ``clip`` to 720p, from upload to completed."""
    settings = Settings(
        data_dir=work / f"data-{segment_seconds}", workers=2, secret_key="bench", segment_seconds=segment_seconds,
        _env_file=None,
    )  # fmt: skip
    rt = build_runtime(settings)
    rt.probe_uploads = False
    service = JobService(rt)
    stop = threading.Event()
    threads = start_workers(rt, stop)
    try:
        started = time.perf_counter()
        with clip.open("rb") as fh:
            job_id = service.upload_and_create(fh, clip.name, ["720p"]).job_id
        while service.job_view(job_id).status not in ("completed", "failed", "partial"):
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        assert service.job_view(job_id).status == "completed"
    finally:
        stop_workers(threads, stop)
        rt.close()
    return seconds


def bench_segments(work: Path) -> dict[str, float]:
    """A 2-minute 720p clip to MP4 720p, whole and in 10 s segments (split + parts + join)."""
    clip = make_clip_file(work / "two-minutes.mp4", seconds=120, size="1280x720", extra=("-g", "50"))
    ffmpeg = FFmpeg()
    preset = PRESETS["720p"]
    facts = ffmpeg.inspect(clip)
    with measured() as whole:
        ffmpeg.convert(clip, work / "whole.mp4", preset.output_args(facts.info))
    pieces_dir = work / "segmented"
    pieces_dir.mkdir()
    with measured() as split_cost:
        split = segments.split(ffmpeg, clip, facts, pieces_dir, 10, timeout=600)
    encoded, piece_walls = [], []
    with measured() as parts_cost:
        for index, piece in enumerate(split.pieces):
            folder = pieces_dir / f"part-{index:05d}"
            folder.mkdir()
            started = time.perf_counter()
            encoded += segments.encode_piece(ffmpeg, [preset], split.plan, index, piece, folder, timeout=600)
            piece_walls.append(time.perf_counter() - started)
    sound_walls = []
    with measured() as sound_cost:
        sounds = []
        for index, part in enumerate(split.sound_parts):
            folder = pieces_dir / f"sound-{index:05d}"
            folder.mkdir()
            started = time.perf_counter()
            sounds.append(segments.encode_sound(ffmpeg, preset, split.plan, index, part, folder, timeout=600))
            sound_walls.append(time.perf_counter() - started)
    with measured() as join_cost:
        segments.assemble(ffmpeg, preset, split.plan, encoded, sounds, pieces_dir / "joined.mp4", timeout=600)
    segmented_cpu = split_cost["cpu"] + parts_cost["cpu"] + sound_cost["cpu"] + join_cost["cpu"]
    # With one worker per task, the parts of the picture and of the sound run side by side after the split.
    fan_out_wall = split_cost["wall"] + max(*piece_walls, *sound_walls) + join_cost["wall"]
    whole_job, segmented_job = run_job(work, clip, 0), run_job(work, clip, 10)
    return {
        "parts": len(split.pieces),
        "whole_cpu": round(whole["cpu"], 1),
        "whole_wall": round(whole["wall"], 1),
        "segmented_cpu": round(segmented_cpu, 1),
        "split_wall": round(split_cost["wall"], 2),
        "slowest_part_wall": round(max(piece_walls), 2),
        "sound_parts": len(sounds),
        "sound_cpu": round(sound_cost["cpu"], 2),
        "slowest_sound_wall": round(max(sound_walls), 2),
        "join_wall": round(join_cost["wall"], 2),
        "cpu_ratio": round(segmented_cpu / whole["cpu"], 3),
        "fan_out_ratio": round(fan_out_wall / whole["wall"], 3),
        "whole_job_wall": round(whole_job, 1),
        "segmented_job_wall": round(segmented_job, 1),
        "workers_ratio": round(segmented_job / whole_job, 3),
    }


def bench_formats(work: Path) -> dict[str, dict[str, float]]:
    clip = make_clip_file(work / "clip.mp4", seconds=10, size="1280x720")
    ffmpeg = FFmpeg()
    source = ffmpeg.probe(clip)
    results = {}
    for format_id, preset in PRESETS.items():
        out = work / f"out.{preset.extension}"
        started = time.perf_counter()
        ffmpeg.convert(clip, out, preset.output_args(source), input_args=preset.input_args(source))
        seconds = time.perf_counter() - started
        results[format_id] = {
            "seconds": round(seconds, 2),
            "realtime_factor": round(10 / seconds, 1),
            "bytes": out.stat().st_size,
            "target_seconds": SPEED_TARGETS[format_id],
        }
    return results


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_upload(work: Path) -> dict[str, float]:
    chunk = os.urandom(1024 * 1024)

    def body() -> Iterator[bytes]:  # a stream: the benchmark itself never holds the file either
        for _ in range(UPLOAD_BYTES // len(chunk)):
            yield chunk

    with Server(work / "data", workers=0, MAX_UPLOAD_BYTES=str(UPLOAD_BYTES * 2)) as server:
        assert server.proc is not None
        before = _peak_rss_mb(server.proc.pid)
        ticket = httpx.post(f"{server.url}/api/uploads").json()
        boundary = "benchboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def multipart() -> Iterator[bytes]:
            yield head
            yield from body()
            yield tail

        started = time.perf_counter()
        response = httpx.post(
            server.url + ticket["url"],
            content=multipart(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            timeout=300,
        )
        seconds = time.perf_counter() - started
        response.raise_for_status()
        peak = _peak_rss_mb(server.proc.pid)
    return {
        "upload_mb": UPLOAD_BYTES / 1024**2,
        "seconds": round(seconds, 2),
        "mb_per_second": round(UPLOAD_BYTES / 1024**2 / seconds, 1),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "target_rss_mb": RSS_TARGET_MB,
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vc-bench-") as tmp:
        work = Path(tmp)
        formats = bench_formats(work)
        segmented = bench_segments(work)
        upload = bench_upload(work)
    print(f"{'format':<10} {'seconds':>8} {'target':>7} {'x realtime':>11} {'size':>10}")
    missed = []
    for format_id, row in formats.items():
        ok = row["seconds"] <= row["target_seconds"]
        missed += [] if ok else [format_id]
        print(
            f"{format_id:<10} {row['seconds']:>8.2f} {row['target_seconds']:>7.1f} "
            f"{row['realtime_factor']:>10.1f}x {row['bytes']:>10,} {'' if ok else 'MISSED'}"
        )
    print(
        f"\nsegments: 2 min 720p -> MP4 720p in {segmented['parts']} parts of 10 s; whole encode "
        f"{segmented['whole_cpu']} CPU-s / {segmented['whole_wall']} s wall"
    )
    for name, label in (
        ("cpu_ratio", f"CPU (split + parts + sound + join = {segmented['segmented_cpu']} CPU-s) / whole"),
        ("fan_out_ratio", f"wall with one worker per task (split {segmented['split_wall']} s + slowest part "
         f"{max(segmented['slowest_part_wall'], segmented['slowest_sound_wall'])} s + join {segmented['join_wall']} s)"
         f" / whole"),
        ("workers_ratio", f"wall of the job with WORKERS=2: {segmented['segmented_job_wall']} s / "
         f"{segmented['whole_job_wall']} s unsegmented"),
    ):  # fmt: skip
        ok = segmented[name] <= SEGMENT_TARGETS[name]
        missed += [] if ok else [name]
        print(f"  {segmented[name]:>6.3f}  (target <= {SEGMENT_TARGETS[name]:.2f})  {label} {'' if ok else 'MISSED'}")
    ok = upload["rss_peak_mb"] <= RSS_TARGET_MB
    missed += [] if ok else ["upload-rss"]
    print(
        f"\nupload {upload['upload_mb']:.0f} MiB in {upload['seconds']} s ({upload['mb_per_second']} MiB/s); "
        f"server RSS {upload['rss_before_mb']} -> peak {upload['rss_peak_mb']} MiB "
        f"(target <= {RSS_TARGET_MB}) {'' if ok else 'MISSED'}"
    )
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"formats": formats, "segments": segmented, "upload": upload}, indent=2)
    )
    if missed:
        print("targets missed:", ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
