"""Benchmarks with targets: conversion speed per format, and server memory during a large upload.

Run with ``make bench``. Targets are for the reference machine (2 cores); results go to stdout and
``bench-results/latest.json``. Exits non-zero if a target is missed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import make_clip_file  # noqa: E402
from tests.e2e.server import Server  # noqa: E402
from video_converter.ffmpeg import FFmpeg  # noqa: E402
from video_converter.presets import PRESETS  # noqa: E402

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
    ok = upload["rss_peak_mb"] <= RSS_TARGET_MB
    missed += [] if ok else ["upload-rss"]
    print(
        f"\nupload {upload['upload_mb']:.0f} MiB in {upload['seconds']} s ({upload['mb_per_second']} MiB/s); "
        f"server RSS {upload['rss_before_mb']} -> peak {upload['rss_peak_mb']} MiB "
        f"(target <= {RSS_TARGET_MB}) {'' if ok else 'MISSED'}"
    )
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"formats": formats, "upload": upload}, indent=2))
    if missed:
        print("targets missed:", ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
