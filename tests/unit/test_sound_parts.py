"""The sound of a segmented output in parts: where the parts start, which frames of each encode are its
own, and reading AAC frames out of ADTS; and the progress of a segmented output (pure functions; the real
splice is tested in e2e)."""

from __future__ import annotations

import pytest

from video_converter import segmenting, segments
from video_converter.ffmpeg import FFmpegError
from video_converter.ffmpeg.parse import ProbeFacts, StreamFacts
from video_converter.model import SegmentPlan, SourceInfo
from video_converter.presets import PRESETS

FRAME = segments.AAC_FRAME


def facts(rate: int | None, seconds: float) -> ProbeFacts:
    sound = StreamFacts(kind="audio", sample_rate=rate, duration=seconds)
    return ProbeFacts(info=SourceInfo(duration=seconds, audio_codec="aac"), streams=(sound,))


def test_parts_start_on_whole_frames_about_the_segment_length_apart_and_the_last_takes_the_rest() -> None:
    rate, starts = segments.sound_layout(facts(44100, 125.0), 10)
    assert rate == 44100
    assert all(start % FRAME == 0 for start in starts)
    assert starts[1] == round(10 * 44100 / FRAME) * FRAME  # 431 frames: 10.008 s
    assert len(starts) == 12  # 125 s: eleven parts of 10 s and a last one of about 15 s


@pytest.mark.parametrize(("rate", "expected"), [(48000, 48000), (22050, 22050), (37800, 48000), (None, 48000)])
def test_a_rate_aac_does_not_have_is_resampled_once_in_the_split(rate: int | None, expected: int) -> None:
    assert segments.sound_layout(facts(rate, 30.0), 10)[0] == expected


def test_a_short_sound_is_one_part() -> None:
    assert segments.sound_layout(facts(48000, 3.0), 10)[1] == [0]


def plan(starts: list[int]) -> SegmentPlan:
    return SegmentPlan(
        source=SourceInfo(duration=30), starts=[0, 10, 20], duration=30, has_audio=True,
        sound_rate=48000, sound_starts=starts,
    )  # fmt: skip


def test_each_part_keeps_the_frames_of_its_own_span() -> None:
    length = 100 * FRAME
    p = plan([0, length, 2 * length])
    pre = segments.PRE_ROLL_FRAMES
    # The first part keeps the encoder's priming frame and its 100 frames; the join lines it up.
    assert segments._own_frames(p, 0) == (0, 101)
    # A middle part read `pre` frames early: frame 0 is priming, 1..pre the neighbour's, then its own 100.
    assert segments._own_frames(p, 1) == (pre + 1, pre + 101)
    assert segments._own_frames(p, 2) == (pre + 1, None)  # the last keeps the encoder's final frames


def test_which_formats_splice_their_sound() -> None:
    p = plan([0, 100 * FRAME])
    h264, vp9 = PRESETS["720p"].recipe, PRESETS["webm"].recipe
    assert h264 is not None and vp9 is not None
    assert segments.sound_parts(h264, p) == 2 and segments.sound_parts(vp9, p) == 1
    assert segments.sound_parts(h264, p.model_copy(update={"sound_starts": []})) == 1  # a plan from before
    assert segments.sound_parts(h264, p.model_copy(update={"has_audio": False})) == 0


def adts(payload: bytes) -> bytes:
    length = 7 + len(payload)
    header = bytes([0xFF, 0xF1, 0x50, 0x80 | (length >> 11), (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
    return header + payload


def test_adts_frames_are_read_by_their_own_lengths() -> None:
    frames = [adts(b"a" * 10), adts(b""), adts(b"c" * 300)]
    assert segments.adts_frames(b"".join(frames)) == frames
    assert segments.adts_frames(b"") == []


@pytest.mark.parametrize(
    "data",
    [b"\x00" * 20, adts(b"abc")[:-1], adts(b"abc") + b"\xff"],
    ids=["not-adts", "cut-short", "trailing-byte"],
)
def test_damaged_adts_is_an_error_not_a_silent_splice(data: bytes) -> None:
    with pytest.raises(FFmpegError):
        segments.adts_frames(data)


def test_progress_counts_the_seconds_encoded_and_the_join_is_last() -> None:
    plan = SegmentPlan(source=SourceInfo(duration=10), starts=[0, 4, 8], duration=10, has_audio=True)
    assert [plan.length(i) for i in range(3)] == [4, 4, 2]
    assert segmenting.progress(plan, {}) == 0.0
    assert segmenting.progress(plan, {0: 1.0}) == 38.0
    assert segmenting.progress(plan, {0: 1.0, 1: 2.0, 2: 3.0}) == 95.0  # the join is the last 5 %
