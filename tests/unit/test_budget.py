"""The work budget of a job (video_converter.budget): the pure computation on probe facts, the job's
deadline, and both refusals where they happen (a worker's probe, the next piece past the deadline).

The cost bomb of the issue "Hostile input, round 2" is tests/unit/data/probe_mp4_8k60_4h_static.json:
ffprobe's output for a 43.5 MB MP4 of 3 h 59 min of static 8K at 60 fps (a keyframe a minute), written
in the shape of the bundled ffprobe's captures; no such file is ever made or decoded here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Env, FakeBinary, MakeEnv
from video_converter import budget, conversion, segmenting
from video_converter.budget import DECODE_WORK, OverBudget, check_budget, format_work, job_work, picture_size
from video_converter.config import Settings
from video_converter.ffmpeg import FFmpeg
from video_converter.ffmpeg.parse import ProbeFacts, parse_probe_facts
from video_converter.limits import Limits, check_media
from video_converter.model import OutputStatus, SegmentPlan, SourceInfo
from video_converter.outcome import Action
from video_converter.presets import PRESETS
from video_converter.work import Convert, Join, Piece, SoundPart

DATA = Path(__file__).parent / "data"
BOMB = DATA / "probe_mp4_8k60_4h_static.json"
ALL = [f for f in PRESETS if f not in ("hls", "storyboard")]  # the formats the figures below were made for

BOMB_SENTENCE = (
    "Converting this 3 h 59 min video (7680x4320 at 60 fps) to 1080p, 720p, 480p, 360p, webm, mp3, gif, "
    "thumbnail is about 2585 minutes of work (counted as minutes of 1080p at 30 fps); a job may cost at most 600. "
    "What would fit: mp3, gif, thumbnail (5 min), "
    "or all these formats for a video of at most 55 min."
)


def bomb() -> ProbeFacts:
    return parse_probe_facts(BOMB.read_text())


def hd(seconds: float = 600, fps: float = 30, size: tuple[int, int] = (1920, 1080)) -> SourceInfo:
    return SourceInfo(
        duration=seconds, width=size[0], height=size[1], video_codec="h264", audio_codec="aac", frame_rate=fps
    )


# --- the computation ---------------------------------------------------------------------------------------


def test_the_bomb_passes_every_other_limit() -> None:
    facts = bomb()
    assert facts.size == 43_500_000 and facts.info.duration == 14340
    assert (facts.info.width, facts.info.height, facts.info.frame_rate) == (7680, 4320, 60)
    check_media(facts, Limits())  # frame size, duration, offsets, density: all pass


def test_ten_minutes_of_1080p30_to_720p_and_480p_fit() -> None:
    work = job_work(["720p", "480p"], hd(), 600)
    # 10 min x (1280x720 / 1920x1080) = 4.44; 10 min x (854x480 / 1920x1080) = 1.98; and one decode of
    # 10 min of 1080p30 (10 x 0.1 = 1) that the two sizes share.
    decode = 10 * DECODE_WORK / 2
    assert work == pytest.approx(
        {"720p": 10 * 1280 * 720 / 2073600 + decode, "480p": 10 * 854 * 480 / 2073600 + decode}
    )
    assert sum(work.values()) == pytest.approx(7.42, abs=0.01)
    facts = ProbeFacts(info=hd(), streams=(), duration=600)
    assert check_budget(facts, ["720p", "480p"], Limits()).fits


def test_the_bomb_to_every_format_is_refused_with_what_would_fit() -> None:
    seconds = budget.source_seconds(bomb(), Limits())
    assert seconds == 14340
    work = job_work(ALL, bomb().info, seconds)
    decode = 239 * 16 * 2 * DECODE_WORK  # 8K is 16 times 1080p, 60 fps twice 30: 764.8 per decode
    assert work == pytest.approx(
        {
            "1080p": 239 * 1.0 * 2 + decode / 4,  # full 1080p, 60 fps is twice 30; a quarter of the MP4s' decode
            "720p": 239 * (1280 * 720 / 2073600) * 2 + decode / 4,  # 212.4 + 191.2
            "480p": 239 * (854 * 480 / 2073600) * 2 + decode / 4,  # 94.5 + 191.2
            "360p": 239 * (640 * 360 / 2073600) * 2 + decode / 4,  # 53.1 + 191.2
            "webm": 239 * (1280 * 720 / 2073600) * 2 + decode,  # capped at 720p; a decode of its own
            "mp3": 239 / 50,  # audio: 1/50 of a minute per minute
            "gif": 10 / 60 * (480 * 270 / 2073600) * 12 / 30,  # its 10 s at 12 fps, 480 wide
            "thumbnail": 12 / 30 / 60 * (1280 * 720 / 2073600),  # the 12 frames it picks from
        }
    )
    assert sum(work.values()) == pytest.approx(2584.9, abs=0.1)
    with pytest.raises(OverBudget) as info:
        check_budget(bomb(), ALL, Limits())
    assert str(info.value) == BOMB_SENTENCE
    # What the sentence offers does fit.
    assert check_budget(bomb(), ["mp3", "gif", "thumbnail"], Limits()).total < 600
    # Whatever size it is converted to, decoding 4 h of 8K60 alone is over the budget.
    with pytest.raises(OverBudget):
        check_budget(bomb(), ["360p"], Limits())


def test_the_refusal_is_a_job_level_sentence_that_is_not_upload_something_else() -> None:
    with pytest.raises(OverBudget) as info:
        check_budget(bomb(), ALL, Limits())
    assert conversion.source_problem(info.value) == f"{BOMB_SENTENCE} Nothing was converted."


def test_output_sizes_are_the_real_ones_never_upscaled() -> None:
    eight_k = hd(size=(7680, 4320))
    assert picture_size(PRESETS["480p"], eight_k) == (854, 480)  # as FFmpeg's -2 rounds it
    assert picture_size(PRESETS["webm"], eight_k) == (1280, 720)
    small = hd(size=(640, 360))
    assert picture_size(PRESETS["1080p"], small) == (640, 360)  # never upscaled
    portrait = hd(size=(1080, 1920))
    assert picture_size(PRESETS["720p"], portrait) == (720, 1280)  # the short side
    assert picture_size(PRESETS["gif"], eight_k) == (480, 270)
    assert picture_size(PRESETS["thumbnail"], portrait) == (720, 1280)
    # A small source to every MP4 size costs its own size each time, not 1080p's.
    assert format_work("1080p", small, 600) == pytest.approx(10 * 640 * 360 / 2073600)


def test_frame_rate_is_capped_and_unknown_counts_as_the_cap() -> None:
    assert format_work("1080p", hd(fps=120), 600) == pytest.approx(20.0)  # capped at 60 fps
    assert format_work("1080p", hd(fps=24), 600) == pytest.approx(8.0)
    unknown = hd().model_copy(update={"frame_rate": None})
    assert format_work("1080p", unknown, 600) == pytest.approx(20.0)


def test_formats_the_source_cannot_give_cost_nothing() -> None:
    silent = hd().model_copy(update={"audio_codec": None})
    assert format_work("mp3", silent, 600) == 0.0
    sound = SourceInfo(duration=600, audio_codec="mp3")
    assert format_work("1080p", sound, 600) == 0.0 and format_work("mp3", sound, 600) == pytest.approx(0.2)


def test_unknown_duration_counts_as_much_as_ffmpeg_may_read() -> None:
    facts = ProbeFacts(info=hd().model_copy(update={"duration": None}), streams=())
    assert budget.source_seconds(facts, Limits()) == 4 * 3600


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_JOB_WORK_MINUTES", "4000")
    settings = Settings(_env_file=None)
    assert Limits.from_settings(settings).max_job_work_minutes == 4000
    assert check_budget(bomb(), ALL, Limits.from_settings(settings)).fits
    assert Limits().max_job_work_minutes == Settings(_env_file=None, max_job_work_minutes=600).max_job_work_minutes


def test_the_job_deadline_derives_from_the_budget_unless_set() -> None:
    assert Settings(_env_file=None).job_seconds == 600 * 60  # 10 h
    assert Settings(_env_file=None, max_job_work_minutes=120).job_seconds == 7200
    assert Settings(_env_file=None, max_job_seconds=900).job_seconds == 900
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert budget.deadline(created, 3600) == created + timedelta(hours=1)
    assert not budget.past_deadline(created, 3600, now=created + timedelta(minutes=59))
    assert budget.past_deadline(created, 3600, now=created + timedelta(hours=1))
    assert budget.seconds_left(created, 3600, now=created + timedelta(minutes=50)) == 600
    assert budget.seconds_left(created, 3600, now=created + timedelta(hours=2)) == 0


# --- where it is enforced: a worker's probe (AWS mode), the pieces past the deadline --------------------------


@pytest.fixture
def bomb_ffmpeg(fake_binary: FakeBinary, tmp_path: Path) -> FFmpeg:
    """An FFmpeg whose ffprobe reports the bomb and whose ffmpeg only leaves a mark if it is ever run."""
    marker = tmp_path / "ffmpeg-was-called"
    return FFmpeg(ffmpeg=fake_binary(f"touch {marker}; exit 1"), ffprobe=fake_binary(f"cat {BOMB}"))


def test_a_worker_fails_the_bomb_job_once_with_the_sentence(
    make_env: MakeEnv, bomb_ffmpeg: FFmpeg, tmp_path: Path
) -> None:
    env = make_env(ffmpeg=bomb_ffmpeg)  # probe_uploads is off: as on AWS, the worker probes
    job_id = env.create(DATA / "probe_mp4_av.json", ALL)  # any bytes: the fake ffprobe reports the bomb
    mp4s = next(w for w in env.created if isinstance(w, Convert) and "1080p" in w.formats)
    assert env.deliver(mp4s) is Action.ACK  # attempt 1, acked: never retried
    assert env.rt.jobs.failure(job_id) == f"{BOMB_SENTENCE} Nothing was converted."
    for format_id in mp4s.formats:
        assert env.record(job_id, format_id).error == conversion.NOT_CONVERTED
    assert env.deliver(Convert(job_id, ("webm",))) is Action.ACK  # fails fast, without probing
    assert env.status(job_id, "webm") is OutputStatus.FAILED
    assert not (tmp_path / "ffmpeg-was-called").exists()
    assert env.pending() == []  # nothing split, nothing queued


def test_a_job_within_its_budget_is_not_refused_by_it(make_env: MakeEnv, bomb_ffmpeg: FFmpeg) -> None:
    env = make_env(ffmpeg=bomb_ffmpeg, max_job_work_minutes=4000)
    job_id = env.create(DATA / "probe_mp4_av.json", ["360p"])
    env.deliver(env.created[0])
    assert env.rt.jobs.failure(job_id) is None  # past the probe (the fake ffmpeg then fails the split)


def _segmented_job(make_env: MakeEnv, tmp_path: Path, *, age: timedelta) -> tuple[Env, str]:
    """A job of 720p and 480p split into 3 pieces (the plan and the pieces stored as a split leaves them),
    created ``age`` ago, run by an FFmpeg that only leaves a mark."""
    marker = tmp_path / "ffmpeg-was-called"
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    env = make_env(ffmpeg=FFmpeg(ffmpeg=str(script), ffprobe=str(script)), max_job_seconds=3600)
    env.rt.probe_uploads = False
    job_id = env.create(DATA / "probe_mp4_av.json", ["720p", "480p"])
    record = env.rt.jobs.job(job_id)
    env.rt.jobs.save_job(record.model_copy(update={"created_at": datetime.now(UTC) - age}))
    source = SourceInfo(duration=180, width=1920, height=1080, video_codec="h264", audio_codec="aac", frame_rate=30)
    plan = SegmentPlan(source=source, starts=[0.0, 60.0, 120.0], duration=180.0, has_audio=True)
    for index in range(plan.count):
        env.uploads.put_bytes(segmenting.source_piece_key(job_id, index), b"piece")
    env.uploads.put_bytes(segmenting.plan_key(job_id), plan.model_dump_json().encode())
    for format_id in ("720p", "480p"):
        env.rt.jobs.save_output(job_id, env.record(job_id, format_id).segmented(plan.count))
    return env, job_id


def test_past_its_deadline_the_next_piece_fails_the_outputs_without_ffmpeg(make_env: MakeEnv, tmp_path: Path) -> None:
    env, job_id = _segmented_job(make_env, tmp_path, age=timedelta(hours=1, seconds=1))
    assert env.deliver(Piece(job_id, ("720p", "480p"), 1)) is Action.ACK
    sentence = (
        "Out of time: a job's conversions must be done within 1 h of its creation, and Part 2 of 3 was not done "
        "by then. Nothing more is converted for it; try fewer formats or a shorter video."
    )
    for format_id in ("720p", "480p"):
        record = env.record(job_id, format_id)
        assert (record.status, record.error) == (OutputStatus.FAILED, sentence)
    assert not (tmp_path / "ffmpeg-was-called").exists()
    # The other pieces and the sound parts find the outputs failed: acked, nothing run.
    assert env.deliver(Piece(job_id, ("720p", "480p"), 2)) is Action.ACK
    assert env.deliver(SoundPart(job_id, ("720p", "480p"), 0)) is Action.ACK
    assert env.record(job_id, "720p").error == sentence
    assert not (tmp_path / "ffmpeg-was-called").exists()


def test_a_sound_part_past_the_deadline_fails_too_but_a_join_is_not_held_to_it(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    env, job_id = _segmented_job(make_env, tmp_path, age=timedelta(hours=2))
    env.deliver(SoundPart(job_id, ("720p",), 0))
    assert (env.record(job_id, "720p").error or "").startswith("Out of time: ")
    assert env.deliver(Join(job_id, "480p")) is Action.RETRY  # the join ran: its parts are not all there yet
    assert env.record(job_id, "480p").error is None


def test_within_its_deadline_a_piece_runs_ffmpeg_bounded_by_the_time_left(make_env: MakeEnv, tmp_path: Path) -> None:
    env, job_id = _segmented_job(make_env, tmp_path, age=timedelta(minutes=30))
    env.deliver(Piece(job_id, ("720p", "480p"), 0))
    assert (tmp_path / "ffmpeg-was-called").exists()
    assert not (env.record(job_id, "720p").error or "").startswith("Out of time")
