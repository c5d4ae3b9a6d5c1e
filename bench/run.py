"""Benchmarks with targets: conversion speed per format, segmenting, several renditions from one source (speed
and quality), server memory during a large upload, the cost of the API-key check on a job poll, and
quick outputs first (bench/quick.py).

Run with ``make bench`` (all of them) or ``python bench/run.py renditions segments`` (those named). Targets
are for the reference machine (2 cores); results go to stdout and ``bench-results/latest.json``. Exits
non-zero if a target is missed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quick import bench_quick, report_quick  # noqa: E402
from tests.conftest import H264_ULTRAFAST, make_clip_file  # noqa: E402
from tests.e2e.server import Server  # noqa: E402
from video_converter import indeximage, segments, streams  # noqa: E402
from video_converter.apikeys import KeyStore  # noqa: E402
from video_converter.auth import Authenticator, signing_secret  # noqa: E402
from video_converter.config import Settings  # noqa: E402
from video_converter.ffmpeg import FFmpeg, ffmpeg_path  # noqa: E402
from video_converter.ffmpeg.runner import child_env  # noqa: E402
from video_converter.jobs import JobService  # noqa: E402
from video_converter.model import SegmentPlan, SourceInfo  # noqa: E402
from video_converter.presets import PRESETS  # noqa: E402
from video_converter.runtime import Runtime, build_runtime  # noqa: E402
from video_converter.storage import LocalStorage  # noqa: E402
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
    "storyboard": 2.0,  # a frame every few seconds of a 10 s clip, tiled into one sprite
}
UPLOAD_BYTES = 512 * 1024 * 1024
RSS_TARGET_MB = 250  # the API's peak resident memory while receiving UPLOAD_BYTES
MULTIPART_BYTES = 2 * 1024**3  # a multipart upload through local mode: 4 parts in flight, as the page sends
MULTIPART_TARGET_MIB_S = 150  # from the first request to the completed (joined and probed) original
MULTIPART_RSS_TARGET_MB = 150


SEGMENT_TARGETS = {
    "cpu_ratio": 1.10,
    "fan_out_ratio": 0.25,
    "workers_ratio": 1.10,
    # Bytes, not seconds: what the split reads of the original (its index), and what the join by copy
    # reads (the pieces' indexes), each against the original's or the output's size.
    "split_read_share": 0.01,
    "sound_read_ratio": 1.05,  # a sound part: no more than its span's share of the original (+ 1 MB)
    "join_index_share": 0.01,
    "hour_split_read_mb": 8.0,  # an hour's index (~3 MB): 1/500 of an hour of phone 1080p (4 GB)
}

# Several MP4 renditions of one source in one job (default WORKERS, no segmenting) against the same renditions
# made by separate FFmpeg runs one after another: ratios job / separate, at most these. A case without
# speed targets is not run separately at all (it is there for its quality).
RENDITION_TARGETS: dict[str, dict[str, float]] = {
    "4k-hevc": {"cpu_ratio": 0.70, "wall_ratio": 0.75},
    "720p-h264": {"wall_ratio": 0.90},
    "4k-hlg": {},
}
# Every output's SSIM ("All") against its source, at least this.
SSIM_TARGETS = {"4k-hevc": 0.95, "720p-h264": 0.95, "4k-hlg": 0.95}
# Other processes using more than this share of the machine make the wall ratios meaningless: the job's
# concurrent workers get a bigger share of a contended CPU than one FFmpeg at a time does.
BUSY_SHARE = 0.10

X265_10BIT = ("-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le")
HLG = (
    "-x265-params", "log-level=error:colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc",
    "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc",
)  # fmt: skip
# What an HDR source's SDR outputs are compared with: a plain, well-known tone map, not necessarily the
# presets' own (which may differ a little and still score well).
REFERENCE_TONE_MAP = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,"
    "zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
)


@dataclass(frozen=True)
class RenditionCase:
    seconds: float
    size: str
    encoder: tuple[str, ...]  # the source's video codec and its options
    formats: tuple[str, ...]
    reference_filter: str = ""  # applied to the source before it is compared with an output (HDR: a tone map)


RENDITION_CASES = {
    "4k-hevc": RenditionCase(
        5, "3840x2160", (*X265_10BIT, "-x265-params", "log-level=error"), ("1080p", "720p", "480p")
    ),
    "720p-h264": RenditionCase(20, "1280x720", H264_ULTRAFAST, ("720p", "480p", "360p")),
    "4k-hlg": RenditionCase(
        5, "3840x2160", (*X265_10BIT, *HLG), ("1080p", "720p", "480p"), reference_filter=REFERENCE_TONE_MAP
    ),
}


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used since boot, all cores (/proc/stat: user, nice,
    system, idle, iowait, irq, softirq, steal; guest time is already counted in user)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall time and CPU time (user + system) of the FFmpeg processes started inside the block, by any thread:
    RUSAGE_CHILDREN counts every child of the process once it is waited for, so the in-process worker
    threads' ffmpeg and ffprobe runs are included. ``others``: the CPU time the rest of the machine used
    meanwhile; wall times compare fairly only when it is small."""
    result: dict[str, float] = {}
    children, own = _cpu_seconds(resource.RUSAGE_CHILDREN), _cpu_seconds(resource.RUSAGE_SELF)
    machine, started = _machine_cpu_seconds(), time.perf_counter()
    yield result
    result["wall"] = time.perf_counter() - started
    result["cpu"] = _cpu_seconds(resource.RUSAGE_CHILDREN) - children
    ours = result["cpu"] + _cpu_seconds(resource.RUSAGE_SELF) - own
    result["others"] = max(0.0, _machine_cpu_seconds() - machine - ours)  # clock ticks vs rusage: never below 0


@dataclass(frozen=True)
class JobRun:
    cost: dict[str, float]  # measured(): wall, cpu, others
    outputs: dict[str, Path]  # a copy of each output, by format


def run_job(work: Path, clip: Path, formats: list[str], *, workers: int, segment_seconds: float) -> JobRun:
    """A local runtime with ``workers`` worker threads converts ``clip`` to ``formats``: wall and CPU time from
    upload to completed, and the outputs copied out of its storage (the runtime is gone afterwards)."""
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=work))
    settings = Settings(
        data_dir=folder / "data", workers=workers, secret_key="bench", segment_seconds=segment_seconds,
        _env_file=None,
    )  # fmt: skip
    rt = build_runtime(settings)
    rt.probe_uploads = False
    service = JobService(rt)
    stop = threading.Event()
    threads = start_workers(rt, stop)
    try:
        with measured() as cost:
            with clip.open("rb") as fh:
                job_id = service.upload_and_create(fh, clip.name, formats).job_id
            while service.documents.view(job_id).status not in ("completed", "failed", "partial"):
                time.sleep(0.1)
        assert service.documents.view(job_id).status == "completed"
        outputs = {}
        done = rt.jobs.summary(job_id)  # what the view is made of: the record itself is written after it
        assert done is not None
        for format_id in formats:
            key = done.outputs[format_id].key
            assert key is not None, done.outputs[format_id]
            with rt.converted.local_path(key, folder) as path:
                outputs[format_id] = Path(shutil.copy(path, folder / f"{format_id}.{PRESETS[format_id].extension}"))
            if PRESETS[format_id].stream is not None:  # each rendition's track, as "hls:video_720p"
                for item in rt.converted.list(streams.stream_prefix(job_id)):
                    name = item.key.rsplit("/", 1)[-1]
                    if name.startswith("video_") and name.endswith(".mp4"):
                        with rt.converted.local_path(item.key, folder) as path:
                            outputs[f"{format_id}:{name[:-4]}"] = Path(shutil.copy(path, folder / name))
    finally:
        stop_workers(threads, stop)
        service.documents.close()
        rt.close()
    return JobRun(cost, outputs)


def default_workers() -> int:
    """WORKERS when it is not set (one per core), whatever this shell's environment says."""
    return int(Settings.model_fields["workers"].get_default(call_default_factory=True))


def bench_segments(work: Path) -> dict[str, float]:
    """A 2-minute 720p clip to MP4 720p, whole and in 10 s segments (split + parts + join)."""
    clip = make_clip_file(work / "two-minutes.mp4", seconds=120, size="1280x720", extra=("-g", "50"))
    ffmpeg = FFmpeg()
    preset = PRESETS["720p"]
    facts = ffmpeg.inspect(clip)

    def encode_whole() -> dict[str, float]:
        with measured() as cost:
            ffmpeg.convert(clip, work / "whole.mp4", preset.output_args(facts.info))
        return cost

    # The same encode varies by up to ~8 % in CPU time from one run to the next on a shared machine, so
    # the whole-file encode brackets the segmented one and counts as the mean of the two.
    before = encode_whole()
    pieces_dir = work / "segmented"
    pieces_dir.mkdir()
    original = Counted(clip)
    with measured() as split_cost:
        split = split_from_index(ffmpeg, original, pieces_dir, 10)
    split_read = original.read_bytes
    sound_reads = []
    encoded, piece_walls = [], []
    with measured() as parts_cost:
        for index, (head, (start, stop)) in enumerate(zip(split.heads, split.plan.ranges, strict=True)):
            folder = pieces_dir / f"part-{index:05d}"
            folder.mkdir()
            started = time.perf_counter()
            piece = folder / "piece.mp4"  # its head and its byte range of the original, as a piece task reads
            piece.write_bytes(head + original.read(start, stop - start))
            encoded += segments.encode_piece(ffmpeg, [preset], split.plan, index, piece, folder, timeout=600)
            piece_walls.append(time.perf_counter() - started)
    sound_walls = []
    with measured() as sound_cost:
        sounds = []
        for index, (head, cut) in enumerate(zip(split.sound_heads, split.plan.sound_cuts, strict=True)):
            folder = pieces_dir / f"sound-{index:05d}"
            folder.mkdir()
            started, before_read = time.perf_counter(), original.read_bytes
            part = folder / "cut.mp4"  # its head and the runs of its sound in the original
            part.write_bytes(head + b"".join(original.read(start, stop - start) for start, stop in cut.ranges))
            sound_reads.append(original.read_bytes - before_read)
            sounds.append(segments.encode_sound(ffmpeg, preset, split.plan, index, part, folder, timeout=600, cut=cut))
            sound_walls.append(time.perf_counter() - started)
    store = LocalStorage(pieces_dir / "store")
    keys = [f"j/{path.parent.name}/{path.name}" for path in [*encoded, *sounds]]
    for key, path in zip(keys, [*encoded, *sounds], strict=True):
        store.put_file(key, path)
    with measured() as join_cost:  # by copy, with S3's part minimum: locally, file copies
        joined = segments.join_by_copy(
            store, split.plan, keys[: len(encoded)], keys[len(encoded) :], "j/joined.mp4", "video/mp4"
        )
    segmented_cpu = split_cost["cpu"] + parts_cost["cpu"] + sound_cost["cpu"] + join_cost["cpu"]
    after = encode_whole()
    whole = {key: (before[key] + after[key]) / 2 for key in ("cpu", "wall")}
    # With one worker per task, the parts of the picture and of the sound run side by side after the split.
    fan_out_wall = split_cost["wall"] + max(*piece_walls, *sound_walls) + join_cost["wall"]
    whole_job, segmented_job = (
        run_job(work, clip, ["720p"], workers=2, segment_seconds=seconds).cost["wall"] for seconds in (0, 10)
    )
    hour = bench_hour_split(work)
    return {
        **hour,
        "parts": split.plan.count,
        "original_bytes": clip.stat().st_size,
        "sound_read_bytes": max(sound_reads),
        "sound_read_ratio": round(max(sound_share(split.plan, clip, k, read) for k, read in enumerate(sound_reads)), 3),
        "split_read_bytes": split_read,
        "split_read_share": round(split_read / clip.stat().st_size, 4),
        "output_bytes": joined.size,
        "join_index_bytes": joined.index_bytes,
        "join_carried_bytes": joined.carried,
        "join_index_share": round(joined.index_bytes / joined.size, 4),
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


def sound_share(plan: SegmentPlan, clip: Path, index: int, read: int) -> float:
    """What sound part ``index`` read of the original against its span's share of it, plus 1 MB."""
    start = plan.sound_starts[index]
    end = plan.sound_starts[index + 1] if index + 1 < len(plan.sound_starts) else plan.duration * plan.sound_rate
    share = clip.stat().st_size * (end - start) / (plan.duration * plan.sound_rate)
    return read / (share + 1e6)


def split_from_index(ffmpeg: FFmpeg, original: Counted, folder: Path, seconds: float) -> segments.Split:
    """The split as the split task makes it of an MP4: the original's index read by range into an image,
    probed, cut (picture and sound); nothing downloaded, no FFmpeg run but the probe."""
    size = original.path.stat().st_size
    image = indeximage.make(original.read, size, folder / "image.mp4")
    assert image is not None
    facts = ffmpeg.inspect(image.path)
    cuts = segments.cut_original(image.read, size, facts, seconds)
    assert cuts is not None and not segments.split_needs_original(facts, cuts)
    return segments.split(ffmpeg, None, facts, folder, seconds, timeout=600, cuts=cuts)


def bench_hour_split(work: Path) -> dict[str, float]:
    """The split of an hour-long MP4 (a tiny picture, so that it is quick to make: its index has an
    hour's samples, 108,000 frames and 168,750 AAC frames, as an hour of 1080p's has) into minute pieces."""
    clip = work / "hour.mp4"
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=30:duration=3600",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3600",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac", "-b:a", "32k", str(clip)],
        check=True, timeout=900, env=child_env(),
    )  # fmt: skip
    folder = work / "hour"
    folder.mkdir()
    original = Counted(clip)
    with measured() as cost:
        started = time.perf_counter()
        split = split_from_index(FFmpeg(), original, folder, 60)
        wall = time.perf_counter() - started
    return {
        "hour_split_read_mb": round(original.read_bytes / 1e6, 2),
        "hour_split_wall": round(wall, 2),
        "hour_split_pieces": split.plan.count,
        "hour_split_sound_parts": len(split.plan.sound_cuts),
        "hour_split_heads_bytes": sum(map(len, [*split.heads, *split.sound_heads])) + len(split.track_head or b""),
        "hour_split_cpu": round(cost["cpu"], 2),
    }


class Counted:
    """Reads of a file by byte range, counted (what a store's read_range would carry)."""

    def __init__(self, path: Path) -> None:
        self.path, self.read_bytes = path, 0

    def read(self, start: int, length: int) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        self.read_bytes += len(data)
        return data


_SSIM_SUMMARY = re.compile(r"\bSSIM Y:.*\bAll:(\d+(?:\.\d+)?)")


def parse_ssim(stderr: str) -> float:
    """The "All" value of the ssim filter's summary line in FFmpeg's log (the last, if there are several)."""
    found = _SSIM_SUMMARY.findall(stderr)
    if not found:
        raise ValueError("FFmpeg's log has no SSIM summary line")
    return float(found[-1])


def ssim(output: Path, reference: Path, reference_filter: str = "") -> float:
    """SSIM of ``output`` against ``reference`` scaled to the output's size (bicubic) and passed through
    ``reference_filter``. The filter (an HDR source's tone map) runs after the downscale, where it costs a
    fraction of what it does on 4K frames; both sides are compared as 8-bit 4:2:0, what the outputs are."""
    size = FFmpeg().probe(output, trusted=True)
    steps = (f"scale={size.width}:{size.height}:flags=bicubic", reference_filter, "format=yuv420p")
    graph = f"[1:v:0]{','.join(step for step in steps if step)}[ref];[0:v:0]format=yuv420p[out];[out][ref]ssim"
    done = subprocess.run(
        [
            ffmpeg_path(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-i", str(output), "-i", str(reference), "-filter_complex", graph, "-an", "-f", "null", "-",
        ],
        capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    return parse_ssim(done.stderr)


def tone_maps(info: SourceInfo) -> bool:
    """Whether the presets tone-map this source (an HDR one) yet: until then its SDR outputs look washed
    out against the reference tone map, and their SSIM is shown but not held to the target."""
    return "tonemap" in " ".join(PRESETS["720p"].output_args(info))


@dataclass
class RenditionResult:
    formats: list[str]
    job_cpu: float
    job_wall: float
    job_others: float  # CPU-seconds the rest of the machine used meanwhile
    separate_cpu: float | None = None  # None: not run, the case has no speed targets
    separate_wall: float | None = None
    separate_others: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)  # cpu_ratio, wall_ratio: job / separate
    ssim: dict[str, float] = field(default_factory=dict)
    ssim_held: bool = True  # False: an HDR source the presets do not tone-map yet


def run_separately(work: Path, clip: Path, formats: list[str]) -> dict[str, float]:
    """Wall and CPU time of one bare FFmpeg run per format, one after another, with the presets' arguments."""
    ffmpeg = FFmpeg()
    info = ffmpeg.probe(clip)
    with measured() as cost:
        for format_id in formats:
            preset = PRESETS[format_id]
            out = work / f"separate-{clip.stem}-{format_id}.{preset.extension}"
            ffmpeg.convert(clip, out, preset.output_args(info), input_args=preset.input_args(info))
    return cost


def bench_rendition(work: Path, name: str, case: RenditionCase) -> RenditionResult:
    """One source to several MP4 sizes: one job against separate FFmpeg runs, and each output's SSIM."""
    clip = make_clip_file(
        work / f"{name}.mp4", seconds=case.seconds, size=case.size, encoder=case.encoder, extra=("-ac", "2"),
        timeout=600,
    )  # fmt: skip
    formats = list(case.formats)
    job = run_job(work, clip, formats, workers=default_workers(), segment_seconds=0)
    result = RenditionResult(
        formats, job_cpu=round(job.cost["cpu"], 1), job_wall=round(job.cost["wall"], 1),
        job_others=round(job.cost["others"], 1),
    )  # fmt: skip
    if RENDITION_TARGETS[name]:
        separate = run_separately(work, clip, formats)
        result.separate_cpu, result.separate_wall = round(separate["cpu"], 1), round(separate["wall"], 1)
        result.separate_others = round(separate["others"], 1)
        result.ratios = {
            "cpu_ratio": round(job.cost["cpu"] / separate["cpu"], 3),
            "wall_ratio": round(job.cost["wall"] / separate["wall"], 3),
        }
    result.ssim = {f: round(ssim(path, clip, case.reference_filter), 4) for f, path in job.outputs.items()}
    result.ssim_held = not case.reference_filter or tone_maps(FFmpeg().probe(clip))
    return result


def bench_renditions(work: Path) -> dict[str, RenditionResult]:
    return {name: bench_rendition(work, name, case) for name, case in RENDITION_CASES.items()}


def bench_formats(work: Path) -> dict[str, dict[str, float]]:
    clip = make_clip_file(work / "clip.mp4", seconds=10, size="1280x720")
    ffmpeg = FFmpeg()
    source = ffmpeg.probe(clip)
    results = {}
    for format_id, preset in PRESETS.items():
        if preset.stream is not None:  # many files from renditions: the hls bench
            continue
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


def _ts_chunk(work: Path) -> bytes:
    """About 1 MiB of MPEG-TS: repeated, still a transport stream, so the upload's probe accepts it."""
    path = work / "chunk.ts"
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-f", "mpegts", str(path)],
        check=True, timeout=120, env={**os.environ, "GCONV_PATH": "/nonexistent/gconv"},
    )  # fmt: skip
    return path.read_bytes()


def bench_upload(work: Path) -> dict[str, float]:
    chunk = _ts_chunk(work)

    def body() -> Iterator[bytes]:  # a stream: the benchmark itself never holds the file either
        for _ in range(UPLOAD_BYTES // len(chunk)):
            yield chunk

    with Server(work / "data", workers=0, MAX_UPLOAD_BYTES=str(UPLOAD_BYTES * 2)) as server:
        assert server.proc is not None
        before = _peak_rss_mb(server.proc.pid)
        ticket = httpx.post(f"{server.url}/api/uploads").json()
        boundary = "benchboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.ts"\r\n'
            "Content-Type: video/mp2t\r\n\r\n"
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
    sent = UPLOAD_BYTES // len(chunk) * len(chunk)
    return {
        "upload_mb": round(sent / 1024**2, 1),
        "seconds": round(seconds, 2),
        "mb_per_second": round(sent / 1024**2 / seconds, 1),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "target_rss_mb": RSS_TARGET_MB,
    }


# The API-key check on a job poll: p99 latency of GET /api/jobs/{id} with a Bearer key (AUTH=keys) against
# the same poll under AUTH=none, both servers up at once and polled in turn (the order swapped every time),
# so the machine's load falls on both alike. A p99 is the few slowest requests, which a burst of another
# process makes on a shared machine whatever the request does, so two figures are kept: the raw p99s, and
# the p99 of the best of AUTH_REPEATS back-to-back polls (a cost every request pays, as the key check,
# stays in it; a moment the process was not scheduled does not). The target holds the second, the median
# of AUTH_ROUNDS rounds.
AUTH_POLLS = 200  # samples per mode and round
AUTH_REPEATS = 3
AUTH_ROUNDS = 5
AUTH_WARMUP = 50
AUTH_P99_TARGET = 1.2


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _poll_target(server: Server, clip: Path, headers: dict[str, str]) -> tuple[httpx.Client, str]:
    """A client of ``server`` and the URL of a job it created there (the poll the bench times)."""
    client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
    with clip.open("rb") as fh:
        response = client.post("/api/jobs", data={"formats": "thumbnail"}, files={"file": (clip.name, fh)})
    response.raise_for_status()
    return client, f"/api/jobs/{response.json()['job_id']}"


def _poll_rounds(targets: dict[str, tuple[httpx.Client, str]]) -> list[dict[str, list[list[float]]]]:
    """Each round's samples per mode: the seconds of AUTH_REPEATS back-to-back polls each."""
    for client, url in targets.values():
        for _ in range(AUTH_WARMUP):
            client.get(url).raise_for_status()
    rounds = []
    for _ in range(AUTH_ROUNDS):
        samples: dict[str, list[list[float]]] = {mode: [] for mode in targets}
        for n in range(AUTH_POLLS):
            for mode in sorted(targets, reverse=n % 2 == 1):
                client, url = targets[mode]
                polls = []
                for _ in range(AUTH_REPEATS):
                    started = time.perf_counter()
                    client.get(url).raise_for_status()
                    polls.append(time.perf_counter() - started)
                samples[mode].append(polls)
        rounds.append(samples)
    return rounds


def _auth_figures(rounds: list[dict[str, list[list[float]]]]) -> dict[str, float]:
    def ratio(samples: dict[str, list[list[float]]]) -> float:
        best = {mode: [min(polls) for polls in values] for mode, values in samples.items()}
        return _percentile(best["keys"], 0.99) / _percentile(best["none"], 0.99)

    figures: dict[str, float] = {}
    for mode in ("none", "keys"):
        every = [t for r in rounds for polls in r[mode] for t in polls]
        best = [min(polls) for r in rounds for polls in r[mode]]
        figures |= {
            f"{mode}_p50_ms": round(_percentile(every, 0.5) * 1000, 2),
            f"{mode}_p99_ms": round(_percentile(every, 0.99) * 1000, 2),
            f"{mode}_best_p99_ms": round(_percentile(best, 0.99) * 1000, 2),
        }
    ratios = sorted(ratio(r) for r in rounds)
    figures["raw_p99_ratio"] = round(figures["keys_p99_ms"] / figures["none_p99_ms"], 3)
    figures["p99_ratio"] = round(ratios[len(ratios) // 2], 3)
    figures["p99_ratio_min"], figures["p99_ratio_max"] = round(ratios[0], 3), round(ratios[-1], 3)
    figures["target_p99_ratio"] = AUTH_P99_TARGET
    return figures


def _check_cost(rt: Runtime, key: str) -> dict[str, float]:
    """The key check alone, in process, as each request makes it (the key record cached for seconds)."""
    authenticator = Authenticator.for_runtime(rt, signing_secret(rt))
    times = []
    for _ in range(AUTH_WARMUP + 5000):
        started = time.perf_counter()
        authenticator.caller(f"Bearer {key}", None)
        times.append(time.perf_counter() - started)
    checks = times[AUTH_WARMUP:]
    return {
        "check_p50_us": round(_percentile(checks, 0.5) * 1e6, 1),
        "check_p99_us": round(_percentile(checks, 0.99) * 1e6, 1),
    }


def bench_auth(work: Path) -> dict[str, float]:
    clip = make_clip_file(work / "clip.mp4", seconds=1.0, size="160x120")
    keyed = work / "keys"
    rt = build_runtime(Settings(data_dir=keyed, workers=0, auth="keys", _env_file=None))
    key = KeyStore(rt.converted).create("bench")[1]
    check = _check_cost(rt, key)
    rt.close()
    with Server(work / "none", workers=0, AUTH="none") as open_, Server(keyed, workers=0, AUTH="keys") as locked:
        targets = {
            "none": _poll_target(open_, clip, {}),
            "keys": _poll_target(locked, clip, {"Authorization": f"Bearer {key}"}),
        }
        rounds = _poll_rounds(targets)
        for client, _ in targets.values():
            client.close()
    return _auth_figures(rounds) | check


def report_auth(auth: dict[str, float]) -> list[str]:
    ok = auth["p99_ratio"] <= AUTH_P99_TARGET
    print(
        f"\nauth: a job poll (GET /api/jobs/{{id}}), AUTH=none against AUTH=keys with a Bearer key, polled in turn: "
        f"p50 {auth['none_p50_ms']} / {auth['keys_p50_ms']} ms, p99 {auth['none_p99_ms']} / {auth['keys_p99_ms']} ms "
        f"(raw ratio {auth['raw_p99_ratio']:.2f}); p99 of the best of {AUTH_REPEATS} {auth['none_best_p99_ms']} / "
        f"{auth['keys_best_p99_ms']} ms: keys/none {auth['p99_ratio']:.2f} (median of {AUTH_ROUNDS} rounds, "
        f"{auth['p99_ratio_min']:.2f}-{auth['p99_ratio_max']:.2f}; target <= {AUTH_P99_TARGET:.2f}) "
        f"{'ok' if ok else 'MISSED'}; the check alone, in process: p50 {auth['check_p50_us']} us, p99 "
        f"{auth['check_p99_us']} us"
    )
    return [] if ok else ["auth-p99"]


def _part_bytes(chunk: bytes, start: int, size: int) -> bytes:
    """``size`` bytes from ``start`` of the chunk repeated end to end (what the benchmark uploads)."""
    offset = start % len(chunk)
    repeats = (offset + size) // len(chunk) + 1
    return memoryview(chunk * repeats)[offset : offset + size].tobytes()


def _send_parts(url: str, upload_id: str, chunk: bytes, part_size: int, parts: int) -> dict[int, str]:
    """PUT every part, four at a time, each from its own connection; return their ETags."""
    numbers = list(range(1, parts + 1))
    lock, etags = threading.Lock(), {}

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                with lock:
                    if not numbers:
                        return
                    number = numbers.pop(0)
                (part,) = client.post(f"/api/uploads/{upload_id}/parts", json={"numbers": [number]}).json()["parts"]
                body = _part_bytes(chunk, (number - 1) * part_size, part["size"])
                answer = client.put(part["url"], content=body)
                answer.raise_for_status()
                with lock:
                    etags[number] = answer.headers["etag"]

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(etags) == parts, "a part failed"
    return etags


def bench_multipart(work: Path) -> dict[str, float]:
    chunk = _ts_chunk(work)
    size = MULTIPART_BYTES // len(chunk) * len(chunk)
    with Server(work / "data", workers=0, MAX_UPLOAD_BYTES=str(size * 2)) as server:
        assert server.proc is not None
        before = _peak_rss_mb(server.proc.pid)
        started = time.perf_counter()
        ticket = httpx.post(f"{server.url}/api/uploads", json={"filename": "big.ts", "size": size}).json()
        etags = _send_parts(server.url, ticket["upload_id"], chunk, ticket["part_size"], ticket["parts"])
        sent = time.perf_counter()
        parts = [{"number": n, "etag": e} for n, e in sorted(etags.items())]
        done = httpx.post(
            f"{server.url}/api/uploads/{ticket['upload_id']}/complete", json={"parts": parts}, timeout=300
        )
        done.raise_for_status()
        seconds = time.perf_counter() - started
        peak = _peak_rss_mb(server.proc.pid)
    return {
        "upload_mb": round(size / 1024**2, 1),
        "parts": ticket["parts"],
        "seconds": round(seconds, 2),
        "parts_seconds": round(sent - started, 2),
        "mb_per_second": round(size / 1024**2 / seconds, 1),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "target_mb_per_second": MULTIPART_TARGET_MIB_S,
        "target_rss_mb": MULTIPART_RSS_TARGET_MB,
    }


def report_multipart(upload: dict[str, float]) -> list[str]:
    fast = upload["mb_per_second"] >= MULTIPART_TARGET_MIB_S
    small = upload["rss_peak_mb"] < MULTIPART_RSS_TARGET_MB
    print(
        f"\nmultipart upload {upload['upload_mb']:.0f} MiB in {upload['parts']:.0f} parts, 4 in flight, local mode: "
        f"{upload['seconds']} s to the completed original (parts {upload['parts_seconds']} s), "
        f"{upload['mb_per_second']} MiB/s (target >= {MULTIPART_TARGET_MIB_S}){'' if fast else ' MISSED'}; "
        f"server RSS {upload['rss_before_mb']} -> peak {upload['rss_peak_mb']} MiB "
        f"(target < {MULTIPART_RSS_TARGET_MB}){'' if small else ' MISSED'}"
    )
    return [name for name, ok in (("multipart-speed", fast), ("multipart-rss", small)) if not ok]


def report_formats(formats: dict[str, dict[str, float]]) -> list[str]:
    print(f"{'format':<10} {'seconds':>8} {'target':>7} {'x realtime':>11} {'size':>10}")
    missed = []
    for format_id, row in formats.items():
        ok = row["seconds"] <= row["target_seconds"]
        missed += [] if ok else [format_id]
        print(
            f"{format_id:<10} {row['seconds']:>8.2f} {row['target_seconds']:>7.1f} "
            f"{row['realtime_factor']:>10.1f}x {row['bytes']:>10,} {'' if ok else 'MISSED'}"
        )
    return missed


def report_segments(segmented: dict[str, float]) -> list[str]:
    print(
        f"\nsegments: 2 min 720p -> MP4 720p in {segmented['parts']} parts of 10 s; whole encode "
        f"{segmented['whole_cpu']} CPU-s / {segmented['whole_wall']} s wall"
    )
    missed = []
    for name, label in (
        ("cpu_ratio", f"CPU (split + parts + sound + join = {segmented['segmented_cpu']} CPU-s) / whole"),
        ("fan_out_ratio", f"wall with one worker per task (split {segmented['split_wall']} s + slowest part "
         f"{max(segmented['slowest_part_wall'], segmented['slowest_sound_wall'])} s + join {segmented['join_wall']} s)"
         f" / whole"),
        ("workers_ratio", f"wall of the job with WORKERS=2: {segmented['segmented_job_wall']} s / "
         f"{segmented['whole_job_wall']} s unsegmented"),
        ("split_read_share", f"bytes the split read of the original (its index and the first frame's "
         f"headers: {segmented['split_read_bytes']}; no FFmpeg run but the probe, nothing downloaded) / "
         f"{segmented['original_bytes']}"),
        ("sound_read_ratio", f"bytes a sound part read of the original (the runs of its own sound, merged "
         f"where under 256 KiB of picture is between them; at most {segmented['sound_read_bytes']}) / its "
         f"span's share of the original + 1 MB"),
        ("join_index_share", f"bytes of the pieces' indexes the join read ({segmented['join_index_bytes']}) / "
         f"output {segmented['output_bytes']} (media copied by the store; carried, under S3's 5 MiB part "
         f"minimum: {segmented['join_carried_bytes']})"),
        ("hour_split_read_mb", f"MB the split of an hour-long MP4 read ({segmented['hour_split_pieces']} pieces "
         f"and {segmented['hour_split_sound_parts']} sound parts of a minute; {segmented['hour_split_wall']} s, "
         f"heads written {segmented['hour_split_heads_bytes']} bytes)"),
    ):  # fmt: skip
        ok = segmented[name] <= SEGMENT_TARGETS[name]
        missed += [] if ok else [name]
        print(f"  {segmented[name]:>6.3f}  (target <= {SEGMENT_TARGETS[name]:.2f})  {label} {'' if ok else 'MISSED'}")
    return missed


def _speed_line(name: str, result: RenditionResult) -> tuple[str, list[str]]:
    """Both sides' CPU-seconds and wall, the ratios against their targets, and the targets missed."""
    job = f"job {result.job_cpu} CPU-s / {result.job_wall} s"
    if result.separate_cpu is None:
        return f"{job} (speed not compared)", []
    ratios, missed = [], []
    for key, label in (("cpu_ratio", "CPU"), ("wall_ratio", "wall")):
        target = RENDITION_TARGETS[name].get(key)
        ok = target is None or result.ratios[key] <= target
        missed += [] if ok else [f"{name} {key}"]
        limit = "" if target is None else f" (<= {target:.2f}{'' if ok else ' MISSED'})"
        ratios.append(f"{label} {result.ratios[key]:.2f}{limit}")
    return f"separate {result.separate_cpu} CPU-s / {result.separate_wall} s, {job}; {', '.join(ratios)}", missed


def _load_line(result: RenditionResult) -> str:
    """How much CPU the rest of the machine took during each side, and whether that spoils the wall times."""
    sides = [("job", result.job_others, result.job_wall)]
    if result.separate_others is not None and result.separate_wall is not None:
        sides.insert(0, ("separate", result.separate_others, result.separate_wall))
    cores = os.cpu_count() or 1
    busy = any(others > BUSY_SHARE * wall * cores for _, others, wall in sides)
    used = ", ".join(f"{others} CPU-s during {side}" for side, others, _ in sides)
    return f"other processes: {used}" + (" (busy machine: wall figures not comparable)" if busy else "")


def report_renditions(results: dict[str, RenditionResult]) -> list[str]:
    print(f"\nrenditions: one job (WORKERS={default_workers()}, unsegmented) against separate FFmpeg runs")
    missed = []
    for name, result in results.items():
        speed, missed_here = _speed_line(name, result)
        missed += missed_here
        print(f"renditions {name} -> {','.join(result.formats)}: {speed}")
        print(f"  {_load_line(result)}")
        target = SSIM_TARGETS[name]
        for format_id, value in result.ssim.items():
            ok = not result.ssim_held or value >= target
            missed += [] if ok else [f"{name} {format_id} ssim"]
            verdict = f"(>= {target:.2f}){'' if ok else ' MISSED'}" if result.ssim_held else "(not tone-mapped yet)"
            print(f"  ssim {format_id:<6} {value:.4f} {verdict}")
    return missed


def report_upload(upload: dict[str, float]) -> list[str]:
    ok = upload["rss_peak_mb"] <= RSS_TARGET_MB
    print(
        f"\nupload {upload['upload_mb']:.0f} MiB in {upload['seconds']} s ({upload['mb_per_second']} MiB/s); "
        f"server RSS {upload['rss_before_mb']} -> peak {upload['rss_peak_mb']} MiB "
        f"(target <= {RSS_TARGET_MB}) {'' if ok else 'MISSED'}"
    )
    return [] if ok else ["upload-rss"]


# hls: the MP4 ladder plus hls against the ladder alone, and hls alone against bare `ffmpeg -f hls`
# runs, one per rendition, with the same encoder settings (CPU-seconds); every output's SSIM.
HLS_TARGETS = {"with_ladder_ratio": 1.05, "alone_ratio": 0.70, "ssim": 0.95}
HLS_LADDER = ["1080p", "720p", "480p", "360p"]


def bare_hls_runs(work: Path, clip: Path) -> dict[str, float]:
    """One bare FFmpeg HLS run per rendition (fMP4, one file, 6 s segments), as a script would do it."""
    ffmpeg = FFmpeg()
    info = ffmpeg.probe(clip)
    stream = PRESETS["hls"].stream
    assert stream is not None
    with measured() as cost:
        for recipe in stream.renditions(info):
            folder = work / f"bare-{recipe.size}"
            folder.mkdir()
            args = [
                *recipe.video(info), "-map", "0:a:0", *recipe.audio(info), "-f", "hls", "-hls_time", "6",
                "-hls_segment_type", "fmp4", "-hls_flags", "single_file", "-hls_playlist_type", "vod",
            ]  # fmt: skip
            ffmpeg.convert(clip, folder / "index.m3u8", args)
    return cost


def bench_hls(work: Path) -> dict[str, float]:
    # A phone-like source: 2160p H.264 (veryfast, CABAC, B-frames), whose decode each bare run repeats.
    camera = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
    clip = make_clip_file(
        work / "hls.mp4", seconds=8, size="3840x2160", encoder=camera, extra=("-ac", "2"), timeout=600
    )
    ladder = run_job(work, clip, HLS_LADDER, workers=1, segment_seconds=0)
    both = run_job(work, clip, [*HLS_LADDER, "hls"], workers=1, segment_seconds=0)
    alone = run_job(work, clip, ["hls"], workers=1, segment_seconds=0)
    bare = bare_hls_runs(work, clip)
    outputs = {**{f: p for f, p in both.outputs.items() if f != "hls"}, **alone.outputs}
    scores = {f: ssim(path, clip) for f, path in outputs.items() if path.suffix == ".mp4"}
    return {
        "ladder_cpu": round(ladder.cost["cpu"], 1),
        "with_ladder_cpu": round(both.cost["cpu"], 1),
        "alone_cpu": round(alone.cost["cpu"], 1),
        "bare_cpu": round(bare["cpu"], 1),
        "with_ladder_ratio": round(both.cost["cpu"] / ladder.cost["cpu"], 3),
        "alone_ratio": round(alone.cost["cpu"] / bare["cpu"], 3),
        "ssim": round(min(scores.values()), 4),
        **{f"ssim {name}": round(value, 4) for name, value in scores.items()},
    }


def report_hls(results: dict[str, float]) -> list[str]:
    print(f"\nhls: 8 s 3840x2160 -> {','.join(HLS_LADDER)} and/or hls (CPU-seconds, WORKERS=1)")
    lines = {
        "with_ladder_ratio": f"ladder + hls {results['with_ladder_cpu']} / ladder alone {results['ladder_cpu']}",
        "alone_ratio": f"hls alone {results['alone_cpu']} / bare ffmpeg -f hls per rendition {results['bare_cpu']}",
    }
    missed = []
    for name, label in lines.items():
        ok = results[name] <= HLS_TARGETS[name]
        missed += [] if ok else [f"hls {name}"]
        print(f"  {results[name]:>6.3f}  (target <= {HLS_TARGETS[name]:.2f})  {label} {'' if ok else 'MISSED'}")
    ok = results["ssim"] >= HLS_TARGETS["ssim"]
    missed += [] if ok else ["hls ssim"]
    scores = ", ".join(f"{k[5:]} {v:.4f}" for k, v in results.items() if k.startswith("ssim "))
    verdict = "" if ok else "MISSED"
    print(f"  {results['ssim']:>6.4f}  (target >= {HLS_TARGETS['ssim']:.2f})  lowest SSIM: {scores} {verdict}")
    return missed


Results = TypeVar("Results")


def _bench(
    run: Callable[[Path], Results], report: Callable[[Results], list[str]]
) -> Callable[[Path], tuple[object, list[str]]]:
    """A bench that prints its results as soon as it has them, and says which targets it missed."""

    def bench(work: Path) -> tuple[object, list[str]]:
        results = run(work)
        return results, report(results)

    return bench


BENCHES: dict[str, Callable[[Path], tuple[object, list[str]]]] = {
    "formats": _bench(bench_formats, report_formats),
    "segments": _bench(bench_segments, report_segments),
    "renditions": _bench(bench_renditions, report_renditions),
    "upload": _bench(bench_upload, report_upload),
    "auth": _bench(bench_auth, report_auth),
    "quick": _bench(bench_quick, report_quick),
    "hls": _bench(bench_hls, report_hls),
    "multipart": _bench(bench_multipart, report_multipart),
}


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        print(f"unknown bench {', '.join(unknown)}; usage: bench/run.py [{' | '.join(BENCHES)} ...]", file=sys.stderr)
        return 2
    results: dict[str, object] = {}
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-video-converter-") as tmp:
        for name in names or list(BENCHES):
            work = Path(tmp) / name
            work.mkdir()
            results[name], missed_here = BENCHES[name](work)
            missed += missed_here
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    # The rendition results are dataclasses: vars() gives their fields, which are plain JSON values.
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=vars))
    if missed:
        print("targets missed:", ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
