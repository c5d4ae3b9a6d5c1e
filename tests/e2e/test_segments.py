"""Long videos in segments, with real FFmpeg on a short clip and SEGMENT_SECONDS=2: the joined output
is the same video as a whole-file encode (frames, duration, picture at every join, sound in sync), the
pieces go through the queue like any message, and a piece that fails or comes twice is handled."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Env, MakeEnv, frames_of, make_clip_file, probe_file
from tests.e2e.conftest import served, wait_for_job
from video_converter import conversion, segmenting, segments
from video_converter.config import Settings
from video_converter.ffmpeg import FFmpeg, ffmpeg_path, ffprobe_path
from video_converter.model import OutputStatus, utcnow
from video_converter.outcome import Action
from video_converter.presets import PRESETS
from video_converter.recovery import lost_work
from video_converter.runtime import Runtime
from video_converter.work import Convert, Join, Piece, SoundPart, Work, to_body

pytestmark = pytest.mark.e2e

SECONDS, RATE = 7, 30


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 s, 30 fps, B-frames and a keyframe every second, with a tone: 'long' next to 2 s segments."""
    return make_clip_file(
        tmp_path_factory.mktemp("long") / "long.mp4",
        seconds=SECONDS,
        size="320x240",
        rate=RATE,
        extra=("-preset", "veryfast", "-g", str(RATE), "-bf", "2"),
    )


@pytest.fixture
def segmented_runtime(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    # A data folder of its own: the `client` fixture's workers (whole files) must not take these messages.
    update = {"workers": 2, "segment_seconds": 2, "data_dir": tmp_path / "segmented"}
    with served(settings.model_copy(update=update)) as both:
        yield both


@pytest.fixture
def segmented(segmented_runtime: tuple[TestClient, Runtime]) -> TestClient:
    return segmented_runtime[0]


def ssim_per_frame(output: Path, reference: Path, tmp_path: Path) -> list[float]:
    """SSIM of each frame against the reference frame of the same index (not the same timestamp)."""
    stats = tmp_path / f"ssim-{output.stem}.txt"
    graph = f"[0:v]setpts=N/{RATE}/TB[a];[1:v]setpts=N/{RATE}/TB[b];[a][b]ssim=stats_file={stats}"
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-i", str(output), "-i", str(reference), "-lavfi", graph, "-f", "null", "-"],
        check=True, timeout=120,
    )  # fmt: skip
    return [float(line.split("All:")[1].split()[0]) for line in stats.read_text().splitlines()]


def download(client: TestClient, job: dict[str, Any], format_id: str, tmp_path: Path, name: str) -> Path:
    out = next(o for o in job["outputs"] if o["format"] == format_id)
    path = tmp_path / name
    path.write_bytes(client.get(out["download_url"]).content)
    return path


def test_a_segmented_output_is_the_same_video_as_a_whole_encode(
    segmented: TestClient, client: TestClient, long_clip: Path, tmp_path: Path
) -> None:
    with long_clip.open("rb") as fh:
        created = segmented.post(
            "/api/jobs", files={"file": ("long.mp4", fh)}, data={"formats": ["360p", "webm", "mp3"]}
        )
    assert created.status_code == 201, created.text
    job = wait_for_job(segmented, created.json()["job_id"], timeout=240)
    assert job["status"] == "completed", job
    parts = {o["format"]: o["segments"] for o in job["outputs"]}
    assert parts["360p"] == parts["webm"] >= 3 and parts["mp3"] == 0  # audio-only formats stay whole

    with long_clip.open("rb") as fh:
        whole_job = client.post("/api/jobs", files={"file": ("long.mp4", fh)}, data={"formats": ["360p"]}).json()
    whole_job = wait_for_job(client, whole_job["job_id"])
    assert whole_job["outputs"][0]["segments"] == 0
    whole = download(client, whole_job, "360p", tmp_path, "whole.mp4")

    source = probe_file(long_clip)
    source_frames = frames_of(long_clip)
    for format_id in ("360p", "webm"):
        joined = download(segmented, job, format_id, tmp_path, f"joined.{format_id}")
        info = probe_file(joined)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
        assert abs(frames_of(joined) - source_frames) <= 2
        assert abs(float(info["format"]["duration"]) - float(source["format"]["duration"])) <= 0.1
        assert abs(float(audio.get("start_time", 0)) - float(video.get("start_time", 0))) <= 0.05  # in sync
        if format_id == "360p":
            assert joined.read_bytes().index(b"moov") < joined.read_bytes().index(b"mdat")  # +faststart
            assert abs(float(audio["duration"]) - float(video["duration"])) <= 0.1  # and to the end
    # Every frame, the ones beside the joins too, looks like the source as much as a whole encode does.
    joined_ssim = ssim_per_frame(tmp_path / "joined.360p", long_clip, tmp_path)
    whole_ssim = ssim_per_frame(whole, long_clip, tmp_path)
    assert len(joined_ssim) == len(whole_ssim)
    assert min(joined_ssim) >= min(whole_ssim) - 0.02 and min(joined_ssim) > 0.9


def test_the_intermediate_pieces_are_gone_after_the_join(
    segmented_runtime: tuple[TestClient, Runtime], long_clip: Path
) -> None:
    segmented, rt = segmented_runtime
    with long_clip.open("rb") as fh:
        job_id = segmented.post("/api/jobs", files={"file": ("long.mp4", fh)}, data={"formats": ["360p"]}).json()[
            "job_id"
        ]
    assert wait_for_job(segmented, job_id, timeout=240)["status"] == "completed"
    # The worker tidies up just after it marks the output completed (never before: a join redelivered
    # after a crash must still find its parts), so give it a moment.
    deadline = time.monotonic() + 30
    while rt.uploads.list(segmenting.segments_prefix(job_id)) or rt.converted.list(
        segmenting.encoded_prefix(job_id, "360p")
    ):
        assert time.monotonic() < deadline, "the split and the encoded parts are still there"
        time.sleep(0.1)


def pcm(path: Path) -> array[float]:
    """The sound as FFmpeg plays it (edit lists honoured: no priming), stereo 48 kHz floats."""
    argv = [
        ffmpeg_path(),
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-f",
        "f32le",
        "-ac",
        "2",
        "-ar",
        "48000",
        "-",
    ]
    return array("f", subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout)


def snr(sound: array[float], reference: array[float], first: int, last: int) -> float:
    """Signal-to-noise ratio (dB) of ``sound`` against ``reference`` over stereo frames first..last."""
    signal = noise = 0.0
    for at in range(2 * first, 2 * last):
        signal += reference[at] ** 2
        noise += (sound[at] - reference[at]) ** 2
    return 10 * math.log10(signal / max(noise, 1e-12))


@pytest.fixture(scope="module")
def noisy_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 s with sound that is different at every instant (pink noise left, a tone right), so a shift or
    a damaged join shows as a loss of SNR, as it would not on a pure tone."""
    path = tmp_path_factory.mktemp("noisy") / "noisy.mp4"
    graph = (
        f"anoisesrc=color=pink:amplitude=0.3:sample_rate=48000:duration={SECONDS}[n];"
        f"sine=frequency=330:sample_rate=48000:duration={SECONDS}[t];[n][t]amerge=inputs=2[a]"
    )
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={RATE}:duration={SECONDS}",
         "-filter_complex", graph, "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast",
         "-g", str(RATE), "-c:a", "aac", "-b:a", "256k", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


# --- one message at a time, by hand ---------------------------------------------------------------------


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env(segment_seconds=2)


def test_pieces_are_queued_redelivered_pieces_are_no_ops_and_the_last_queues_the_join(
    env: Env, long_clip: Path
) -> None:
    job_id = env.create(long_clip, ["360p"])
    assert env.deliver(Convert(job_id, ("360p",))) is Action.ACK  # the whole message: split, pieces queued
    sent = env.pending()
    sounds, pieces = [t for t in sent if isinstance(t, SoundPart)], [t for t in sent if isinstance(t, Piece)]
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert plan is not None and [t.index for t in pieces] == list(range(plan.count))
    # Cut from the original's index: each piece is a head of a few KB and a range of the original, the
    # ranges in order and covering the picture's bytes; nothing of the picture was copied.
    assert len(plan.ranges) == plan.count and [a for a, _ in plan.ranges] == sorted(a for a, _ in plan.ranges)
    assert all(
        (env.rt.uploads.size(segmenting.source_piece_key(job_id, n)) or 0) in range(1, 16_000)
        for n in range(plan.count)
    )
    # The sound in parts too (AAC splices), queued first, beside the pieces.
    assert sent[: len(sounds)] == sounds == [SoundPart(job_id, ("360p",), n) for n in range(len(plan.sound_starts))]
    assert len(sounds) == SECONDS // 2
    assert env.rt.jobs.output(job_id, "360p").segments == plan.count
    env.queue.entries.clear()
    for task in pieces:
        assert env.deliver(task) is Action.ACK
    for part in sounds[:-1]:
        assert env.deliver(part) is Action.ACK
    assert env.pending() == []  # the sound is not all there yet: no join
    assert env.deliver(pieces[0], attempt=2) is Action.ACK  # a redelivery: already encoded, nothing sent
    assert env.pending() == []
    assert env.deliver(sounds[-1]) is Action.ACK
    assert env.pending() == [Join(job_id, "360p")]
    assert env.deliver(Join(job_id, "360p")) is Action.ACK
    done = env.rt.jobs.output(job_id, "360p")
    assert done.status is OutputStatus.COMPLETED and done.segments == plan.count
    assert env.deliver(Join(job_id, "360p")) is Action.ACK  # a second join: a no-op
    assert env.rt.jobs.output(job_id, "360p") == done


def test_a_piece_that_fails_for_good_fails_its_output_with_the_reason(
    env: Env, long_clip: Path, fake_binary: Any
) -> None:
    job_id = env.create(long_clip, ["360p"])
    env.deliver(Convert(job_id, ("360p",)))
    pieces = [t for t in env.pending() if isinstance(t, Piece)]
    env.queue.entries.clear()
    env.deliver(pieces[0])
    env.rt.uploads.delete(segmenting.source_piece_key(job_id, 1))  # piece 2 of the original is gone
    assert env.deliver(pieces[1]) is Action.ACK
    failed = env.rt.jobs.output(job_id, "360p")
    assert failed.status is OutputStatus.FAILED
    assert failed.error == "A piece of the original is missing (it may have expired)."
    assert env.rt.converted.list(segmenting.encoded_prefix(job_id, "360p")) == []  # tidied
    assert env.deliver(pieces[2]) is Action.ACK  # the rest are dropped: the output failed
    assert env.rt.converted.list(segmenting.encoded_prefix(job_id, "360p")) == []


def test_a_crashing_encoder_is_retried_per_piece_and_fails_the_output_on_the_last_attempt(
    env: Env, long_clip: Path, fake_binary: Any
) -> None:
    job_id = env.create(long_clip, ["360p"])
    env.deliver(Convert(job_id, ("360p",)))
    piece = [t for t in env.pending() if isinstance(t, Piece)][1]  # part 2
    env.rt.ffmpeg = FFmpeg(fake_binary('echo "encoder exploded" >&2; exit 1'), ffprobe_path())
    assert env.deliver(piece, attempt=1) is Action.RETRY
    assert env.rt.jobs.output(job_id, "360p").status is OutputStatus.PROCESSING  # the other parts go on
    assert env.deliver(piece, attempt=env.rt.settings.max_attempts) is Action.ACK
    failed = env.rt.jobs.output(job_id, "360p")
    assert failed.status is OutputStatus.FAILED
    assert (failed.error or "").startswith("Part 2 of ")
    assert "encoder exploded" in (failed.error or "")
    assert f"(after {env.rt.settings.max_attempts} attempts)" in (failed.error or "")


def test_short_sources_and_other_formats_stay_whole(env: Env, make_clip: Any) -> None:
    short = make_clip(seconds=1.5)
    job_id = env.create(short, ["360p", "gif"])
    for format_id in ("360p", "gif"):
        assert env.deliver(Convert(job_id, (format_id,))) is Action.ACK
        assert env.rt.jobs.output(job_id, format_id).status is OutputStatus.COMPLETED
        assert env.rt.jobs.output(job_id, format_id).segments == 0
    assert env.pending() == [] and segmenting.load_plan(env.rt.uploads, job_id) is None


def run_all(env: Env, job_id: str) -> None:
    while pending := env.pending():
        env.queue.entries.clear()
        for task in pending:
            assert env.deliver(task) is Action.ACK


@pytest.mark.parametrize("by_range", [True, False], ids=["cut-by-range", "decoded-by-the-split"])
@pytest.mark.parametrize("roll", [True, False], ids=["with-roll", "without-roll"])
def test_the_sound_in_parts_splices_with_no_shift_and_no_damage_at_the_joins(
    env: Env, noisy_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, roll: bool, by_range: bool
) -> None:
    """Against the source, the 85 ms around each join of the sound parts are as good as a whole-file
    encode's (within 3 dB) and the sound is not shifted (a shift of even one frame costs all its SNR on
    noise). Without the neighbours' frames the encoders read (``roll``), the joins do fail that bar:
    the check can tell. Each part reads its own cut of the original's sound (``by_range``), or the
    split decodes the sound into parts (the originals whose sound cannot be cut so)."""
    if not roll:
        monkeypatch.setattr(segments, "PRE_ROLL_FRAMES", 0)
        monkeypatch.setattr(segments, "POST_ROLL_FRAMES", 0)
    if not by_range:
        monkeypatch.setattr(segments, "cut_sound", lambda *_: None)
    job_id = env.create(noisy_clip, ["360p"])
    env.deliver(Convert(job_id, ("360p",)))
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert plan is not None and plan.sound_rate == 48000 and len(plan.sound_starts) == SECONDS // 2
    assert len(plan.sound_cuts) == (len(plan.sound_starts) if by_range else 0)
    run_all(env, job_id)
    record = env.rt.jobs.output(job_id, "360p")
    assert record.status is OutputStatus.COMPLETED and record.key is not None
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(env.rt.converted.get_bytes(record.key))
    whole = tmp_path / "whole.mp4"
    FFmpeg().convert(noisy_clip, whole, PRESETS["360p"].output_args(FFmpeg().probe(noisy_clip)))

    source, joined_sound, whole_sound = pcm(noisy_clip), pcm(joined), pcm(whole)
    assert abs(len(joined_sound) - len(source)) <= 2 * 1024  # as long, to within a frame
    assert snr(joined_sound, source, 0, 48000) >= snr(whole_sound, source, 0, 48000) - 0.5  # the first part
    seams = [
        snr(joined_sound, source, start - 2048, start + 2048) - snr(whole_sound, source, start - 2048, start + 2048)
        for start in plan.sound_starts[1:]
    ]
    if roll:
        assert min(seams) >= -3.0, seams
    else:
        assert min(seams) < -3.0, seams


def test_renditions_of_a_long_video_share_each_piece_and_sound_part(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """360p and 480p together: one message per piece and per sound part for both (one decode of the
    piece feeds both encoders; the sound, encoded the same way for both, is encoded once), then a join
    each. Both are the source's video, frame for frame."""
    runs: list[int] = []
    convert = FFmpeg.convert

    def counting(self: FFmpeg, source: Path, output: Path, args: Any, **options: Any) -> None:
        runs.append(1 + len(options.get("more_outputs", ())))
        convert(self, source, output, args, **options)

    monkeypatch.setattr(FFmpeg, "convert", counting)
    clip = make_clip_file(  # 480 lines: the 360p and 480p pictures differ (a smaller source makes one)
        tmp_path / "vga.mp4", seconds=SECONDS, size="640x480", rate=RATE, extra=("-g", str(RATE))
    )
    job_id = env.job(clip, ["360p", "480p"], "long.mp4")
    (whole,) = env.take()
    assert env.deliver(whole) is Action.ACK
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert plan is not None
    sent = env.pending()
    assert all(t.formats == ("360p", "480p") for t in sent) and len(sent) == plan.count + len(plan.sound_starts)
    runs.clear()
    run_all(env, job_id)
    # Each sound part once for both (its encode, then its frames copied into an M4A), each piece once for
    # both sizes; the joins are by copy: no FFmpeg run at all.
    sounds = 2 * len(plan.sound_starts)
    assert len(runs) == sounds + plan.count
    assert sorted(runs) == [1] * sounds + [2] * plan.count
    for format_id in ("360p", "480p"):
        record = env.rt.jobs.output(job_id, format_id)
        assert record.status is OutputStatus.COMPLETED and record.segments == plan.count and record.key
        path = tmp_path / f"{format_id}.mp4"
        path.write_bytes(env.rt.converted.get_bytes(record.key))
        assert abs(frames_of(path) - frames_of(clip)) <= 2


def test_reconciliation_sends_again_only_the_pieces_the_queue_lost(env: Env, long_clip: Path) -> None:
    job_id = env.create(long_clip, ["360p"])
    assert env.deliver(Convert(job_id, ("360p",))) is Action.ACK  # split: parts and pieces queued
    sent = env.take()
    pieces = [w for w in sent if isinstance(w, Piece)]
    sounds = [w for w in sent if isinstance(w, SoundPart)]
    assert env.deliver(pieces[0]) is Action.ACK and env.deliver(sounds[0]) is Action.ACK  # done
    still_queued: set[Work] = {pieces[2], sounds[1]}  # the queue kept these; the rest was lost
    later = utcnow() + timedelta(seconds=env.settings.stale_after + 1)
    lost = list(
        lost_work(
            env.rt.jobs,
            env.rt.uploads,
            [job_id],
            still_queued,
            stale_after=timedelta(seconds=env.settings.stale_after),
            now=later,
        )
    )
    every: list[Work] = [*pieces, *sounds]
    assert sorted(map(to_body_key, lost)) == sorted(
        map(to_body_key, [w for w in every if w not in {pieces[0], sounds[0], *still_queued}])
    )
    for work in every:
        env.deliver(work)
    assert env.take() == [Join(job_id, "360p")]
    # Every piece and part done, the join lost: only the join goes again.
    assert list(
        lost_work(
            env.rt.jobs,
            env.rt.uploads,
            [job_id],
            set(),
            stale_after=timedelta(seconds=env.settings.stale_after),
            now=later,
        )
    ) == [Join(job_id, "360p")]


def to_body_key(work: Work) -> str:
    return json.dumps(to_body(work), sort_keys=True)


def test_two_formats_racing_for_the_split_split_the_original_once(
    env: Env, long_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = env.create(long_clip, ["360p", "webm"])
    both_probed = threading.Barrier(2, timeout=60)
    inspect, split = conversion.inspect, segments.split
    splits: list[str] = []

    def probed_together(*args: Any, **kwargs: Any) -> Any:
        facts = inspect(*args, **kwargs)
        both_probed.wait()  # both have looked for a plan and found none: they race for the split
        return facts

    def counted(*args: Any, **kwargs: Any) -> Any:
        splits.append(threading.current_thread().name)
        return split(*args, **kwargs)

    monkeypatch.setattr(conversion, "inspect", probed_together)
    monkeypatch.setattr(segments, "split", counted)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(env.deliver, [Convert(job_id, ("360p",)), Convert(job_id, ("webm",))]))
    assert outcomes == [Action.ACK, Action.ACK] and len(splits) == 1
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert plan is not None and plan.count > 1
    assert env.record(job_id, "360p").segments == env.record(job_id, "webm").segments == plan.count
    queued = env.pending()
    for format_id in ("360p", "webm"):
        assert sorted(w.index for w in queued if isinstance(w, Piece) and w.formats == (format_id,)) == list(
            range(plan.count)
        )


def test_an_original_without_an_index_is_split_by_ffmpeg_and_joined_by_copy(env: Env, tmp_path: Path) -> None:
    """MPEG-TS has no index to cut by: the split copies its pieces out as before; the MP4 output is
    still joined by copy, and is the source's video frame for frame."""
    clip = make_clip_file(tmp_path / "long.ts", seconds=SECONDS, size="320x240", rate=RATE, extra=("-g", str(RATE)))
    job_id = env.create(clip, ["360p"])
    env.deliver(Convert(job_id, ("360p",)))
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert plan is not None and plan.count >= 3 and plan.ranges == []
    run_all(env, job_id)
    record = env.rt.jobs.output(job_id, "360p")
    assert record.status is OutputStatus.COMPLETED and record.key is not None
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(env.rt.converted.get_bytes(record.key))
    assert abs(frames_of(joined) - SECONDS * RATE) <= 2


def test_a_piece_whose_original_is_gone_fails_its_output_with_the_reason(env: Env, long_clip: Path) -> None:
    """Pieces read their range of the original: once it has expired, they say a piece is missing."""
    job_id = env.create(long_clip, ["360p"])
    env.deliver(Convert(job_id, ("360p",)))
    pieces = [t for t in env.pending() if isinstance(t, Piece)]
    env.queue.entries.clear()
    env.rt.uploads.delete(env.rt.jobs.job(job_id).source_key)
    assert env.deliver(pieces[0]) is Action.ACK
    failed = env.rt.jobs.output(job_id, "360p")
    assert failed.status is OutputStatus.FAILED
    assert failed.error == "A piece of the original is missing (it may have expired)."
