"""Bench "quick": quick outputs first. A 55 s 1280x720 clip to every format with WORKERS=2, converted with
today's scheduling (the job's messages sent cheapest first, quick work with a priority) and with the one
before it (sent as asked: the MP4 sizes and WebM took both workers, the thumbnail waited for them):
time from the job's creation to its thumbnail, its MP3 and the whole job, and the estimate the job got
at its creation against the time it took. Rounds alternate the two, so both meet the same load.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from tests.conftest import make_clip_file
from video_converter.config import Settings
from video_converter.estimate import SPEEDS_KEY
from video_converter.jobs import JobService
from video_converter.presets import PRESETS
from video_converter.queues import Queue
from video_converter.runtime import build_runtime
from video_converter.work import Convert, Task, divide, to_body
from video_converter.worker import start_workers, stop_workers

QUICK_TARGETS = {"thumbnail_seconds": 5.0, "mp3_seconds": 15.0, "job_ratio": 1.05}
CLIP_SECONDS = 55
ROUNDS = 2
# Film grain: x264 and VP9 work on it about as hard as on real footage (the bare test pattern encodes
# 2-3x faster than the issue's trailer did).
GRAIN = ("-vf", "noise=alls=12:allf=t")


JOBS = "video_converter.jobs"  # where a job's messages are made and sent


def _as_asked(job_id: str, formats: list[str]) -> list[Convert]:
    """The division before: the same messages, in the order their first format was asked for."""
    return sorted(divide(job_id, formats), key=lambda work: formats.index(work.formats[0]))


def _without_priority(queue: Queue, task: Task) -> None:
    queue.send(to_body(task), group=task.job_id)


@contextlib.contextmanager
def scheduling(before: bool) -> Iterator[None]:
    """Today's scheduling, or (``before``) the one it replaced."""
    if not before:
        yield
        return
    with (
        mock.patch("video_converter.jobs.divide", _as_asked),
        mock.patch("video_converter.jobs.send", _without_priority),
    ):
        yield


def run_once(work: Path, clip: Path, *, before: bool, speeds: Path | None) -> dict[str, float]:
    """One job of every format on a fresh server with two workers (``speeds``: what an earlier round
    learned, to start from): seconds from its creation to each first output and to its end."""
    data = Path(tempfile.mkdtemp(prefix="quick-", dir=work)) / "data"
    if speeds is not None and speeds.exists():
        (data / "converted").mkdir(parents=True)
        shutil.copy(speeds, data / "converted" / SPEEDS_KEY)
    rt = build_runtime(Settings(data_dir=data, workers=2, secret_key="bench", _env_file=None))
    service = JobService(rt)
    stop = threading.Event()
    threads = start_workers(rt, stop)
    try:
        with scheduling(before), clip.open("rb") as fh:
            view = service.upload_and_create(fh, clip.name, list(PRESETS))
        while service.documents.view(view.job_id).status not in ("completed", "failed", "partial"):
            time.sleep(0.1)
        created = rt.jobs.job(view.job_id).created_at
        done = {f: (rt.jobs.output(view.job_id, f).updated_at - created).total_seconds() for f in PRESETS}
    finally:
        stop_workers(threads, stop)
        service.documents.close()
        rt.close()
    if speeds is not None:
        shutil.copy(data / "converted" / SPEEDS_KEY, speeds)
    return {
        "thumbnail_seconds": round(done["thumbnail"], 1),
        "mp3_seconds": round(done["mp3"], 1),
        "gif_seconds": round(done["gif"], 1),
        "job_seconds": round(max(done.values()), 1),
        "estimate_seconds": round(view.estimate.seconds_left, 1) if view.estimate else -1.0,
    }


@dataclass(frozen=True)
class QuickResult:
    rounds: dict[str, list[dict[str, float]]]  # "before" and "now": each round's run_once
    before: dict[str, float]  # the means
    now: dict[str, float]
    job_ratio: float  # the whole job's mean time, now / before


def bench_quick(work: Path) -> QuickResult:
    clip = make_clip_file(work / "trailer.mp4", seconds=CLIP_SECONDS, size="1280x720", rate=24, extra=GRAIN)
    speeds = work / "speeds.json"  # the new scheduling's rounds learn one after the other
    rounds: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
    for index in range(ROUNDS):
        order = (True, False) if index % 2 == 0 else (False, True)
        for before in order:
            run = run_once(work, clip, before=before, speeds=None if before else speeds)
            rounds["before" if before else "now"].append(run)
            print(f"  quick round {index + 1}, {'before' if before else 'now'}: {run}", flush=True)
    then, now = _mean(rounds["before"]), _mean(rounds["now"])
    return QuickResult(rounds, then, now, round(now["job_seconds"] / then["job_seconds"], 3))


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(sum(run[key] for run in runs) / len(runs), 1) for key in runs[0]}


def report_quick(result: QuickResult) -> list[str]:
    now, targets = result.now, QUICK_TARGETS
    print(f"\nquick outputs first: {CLIP_SECONDS} s 1280x720 to every format, WORKERS=2 (mean of {ROUNDS} rounds)")
    print(f"{'':<8} {'thumbnail':>10} {'mp3':>7} {'gif':>7} {'whole job':>10}")
    for name, row in (("before", result.before), ("now", now)):
        print(
            f"{name:<8} {row['thumbnail_seconds']:>9.1f}s {row['mp3_seconds']:>6.1f}s {row['gif_seconds']:>6.1f}s "
            f"{row['job_seconds']:>9.1f}s"
        )
    missed = [key for key in ("thumbnail_seconds", "mp3_seconds") if now[key] > targets[key]]
    missed += ["job_ratio"] if result.job_ratio > targets["job_ratio"] else []
    print(
        f"time to first output: thumbnail {now['thumbnail_seconds']} s (target <= {targets['thumbnail_seconds']}), "
        f"MP3 {now['mp3_seconds']} s (target <= {targets['mp3_seconds']}); whole job now / before "
        f"{result.job_ratio} (target <= {targets['job_ratio']}) {'MISSED: ' + ', '.join(missed) if missed else ''}"
    )
    for index, run in enumerate(result.rounds["now"]):
        basis = "the defaults" if index == 0 else "what the rounds before learned"
        took = f"{run['estimate_seconds']} s, took {run['job_seconds']} s"
        print(f"estimate at creation, round {index + 1} (from {basis}): {took}")
    return [f"quick-{name}" for name in missed]
