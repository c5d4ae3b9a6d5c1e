"""The sound of an MP4 or MOV original read by byte range (``segments.cut_sound``): each part's cut,
decoded and trimmed (``trim_filter``), is the same samples as that span of a decode of the whole sound,
for AAC at 48 and 44.1 kHz, 5.1 downmixed, PCM, and a sound that starts after the picture; and what
cannot be cut exactly is left to the split."""

from __future__ import annotations

import subprocess
from array import array
from pathlib import Path

import pytest

from video_converter import mp4join, segments
from video_converter.ffmpeg import FFmpeg, ffmpeg_path
from video_converter.ffmpeg.parse import ProbeFacts
from video_converter.ffmpeg.runner import child_env
from video_converter.presets import downmix_filter

pytestmark = pytest.mark.e2e

SECONDS = 7
# Music-like: tones and a sweep. (AAC's noise substitution, which FFmpeg's encoder uses on noise, makes
# a decoder invent those bands' noise afresh, so a decode from a cut differs there by design; the seam
# test in test_segments checks parts of noise by their SNR instead.)
SIGNAL = "aevalsrc=0.4*sin(2*PI*440*t)+0.2*sin(2*PI*(2000+300*t)*t):s={rate}:d={seconds}"
PICTURE = ["-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=30:duration={SECONDS}"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast"]
AAC = ["-c:a", "aac", "-aac_pns", "0"]
CASES: dict[str, list[str]] = {
    "aac-48k.mp4": ["-f", "lavfi", "-i", SIGNAL.format(rate=48000, seconds=SECONDS), *H264, *AAC],
    "aac-44k.mov": ["-f", "lavfi", "-i", SIGNAL.format(rate=44100, seconds=SECONDS), *H264, *AAC],
    "aac-5.1.mp4": [
        "-f",
        "lavfi",
        "-i",
        SIGNAL.format(rate=48000, seconds=SECONDS),
        "-filter_complex",
        "[1:a]pan=5.1|c0=c0|c1=0.5*c0|c2=0.2*c0|c3=0.1*c0|c4=0.7*c0|c5=0.3*c0[a]",
        "-map",
        "0:v",
        "-map",
        "[a]",
        *H264,
        *AAC,
    ],
    "pcm.mov": ["-f", "lavfi", "-i", SIGNAL.format(rate=48000, seconds=SECONDS), *H264, "-c:a", "pcm_s16le"],
    "late-sound.mp4": [
        "-f",
        "lavfi",
        "-i",
        SIGNAL.format(rate=48000, seconds=SECONDS - 1),
        "-filter_complex",
        "[1:a]adelay=700:all=1[a]",
        "-map",
        "0:v",
        "-map",
        "[a]",
        *H264,
        *AAC,
    ],
}


def made(name: str, folder: Path) -> Path:
    path = folder / name
    argv = [ffmpeg_path(), "-v", "error", *PICTURE, *CASES[name], str(path)]
    subprocess.run(argv, check=True, timeout=120, env=child_env())
    return path


def decoded(path: Path, graph: str) -> array[float]:
    """The first sound track decoded through ``graph``, as interleaved 32-bit float samples."""
    argv = [ffmpeg_path(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-af", graph, "-f", "f32le", "-"]
    samples = array("f")
    samples.frombytes(subprocess.run(argv, capture_output=True, check=True, timeout=120, env=child_env()).stdout)
    return samples


def cuts_of(original: Path) -> tuple[segments.Sound | None, ProbeFacts]:
    data, facts = original.read_bytes(), FFmpeg().inspect(original)
    movie = mp4join.read_movie(lambda at, n: data[at : at + n], len(data))
    return segments.cut_sound(movie, facts, 2.0, True), facts


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_cut_decodes_to_the_samples_of_the_whole_decode(name: str, tmp_path: Path) -> None:
    original = made(name, tmp_path)
    sound, facts = cuts_of(original)
    assert sound is not None and len(sound.parts) == len(sound.starts) >= 3
    # what the split decoded (in float from the start, as the cut's decode is: PCM is converted once)
    whole = decoded(original, f"aformat=sample_fmts=flt,{downmix_filter(facts.info)},aresample={sound.rate}")
    data = original.read_bytes()
    spans = [max(0, start - segments.PRE_ROLL_FRAMES * segments.AAC_FRAME) for start in sound.starts]
    for first, cut, head in [
        *zip(spans, sound.parts, sound.part_heads, strict=True),
        (0, sound.track, sound.track_head),
    ]:
        path = tmp_path / "cut.mp4"
        path.write_bytes(head + b"".join(data[start:stop] for start, stop in cut.ranges))
        got = decoded(path, f"aformat=sample_fmts=flt,{segments.trim_filter(cut, facts.info)}")
        expected = whole[2 * first :] if cut.keep is None else whole[2 * first : 2 * (first + cut.keep)]
        assert len(got) == len(expected), (first, cut)
        assert got == expected, (first, cut)  # the same samples, bit for bit
    # a part reads no more than its span's share of the original (these originals interleave frame by
    # frame, so the runs of its sound are read as one range; mp4join's tests cut them apart)
    for start, cut in zip(spans, sound.parts, strict=True):
        span = (cut.keep if cut.keep is not None else len(whole) // 2 - start) / sound.rate
        share = len(data) * span / SECONDS
        assert sum(stop - start for start, stop in cut.ranges) <= 1.1 * share + 64 * 1024, cut


def test_a_sound_that_cannot_be_cut_exactly_is_left_to_the_split(tmp_path: Path) -> None:
    """MP3 frames borrow bits from the frames before them (its reservoir): decoded from a cut, the
    first frames would differ, so the split decodes it as before."""
    original = tmp_path / "mp3.mp4"
    argv = [ffmpeg_path(), "-v", "error", *PICTURE, "-f", "lavfi", "-i", SIGNAL.format(rate=48000, seconds=SECONDS),
            *H264, "-c:a", "libmp3lame", str(original)]  # fmt: skip
    subprocess.run(argv, check=True, timeout=120, env=child_env())
    assert cuts_of(original)[0] is None
