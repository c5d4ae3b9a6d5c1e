"""HDR phone video with real FFmpeg: 1 s HLG and PQ clips converted by the real presets come out looking
like the reference tone map of the same clip (mean luma and saturation), not like the grey picture an
8-bit conversion without tone mapping gives, and are tagged BT.709; an SDR clip's outputs stay as they
were.

The HDR clips hold HDR content, not SDR values relabelled: testsrc2's BT.709 picture is taken to linear
light, its primaries converted to BT.2020, and encoded with the HLG or PQ curve (10-bit HEVC, tagged like
a phone's), SDR white placed at 203 nits (BT.2408's reference white: HLG 75 %, PQ 58 %).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import make_clip_file, probe_file
from video_converter import segments
from video_converter.ffmpeg import FFmpeg, ffmpeg_path
from video_converter.model import SegmentPlan, SourceInfo
from video_converter.presets import PRESETS

pytestmark = pytest.mark.e2e

# The tone map known to look right (what the presets must match), and what an 8-bit conversion without
# tone mapping does: the HDR code values read as if they were SDR ones.
REFERENCE = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,"
    "zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
)
NAIVE = "format=yuv420p"
# Measured on these clips, the presets' outputs are within 0.5 % of the reference in luma and saturation
# (MP4, WebM), 3 % (GIF: a 128-colour palette; thumbnail: a full-range JPEG, picked from 8-bit frames);
# the naive conversion is 45 % (HLG) and 68 % (PQ) less saturated, and 21 % (HLG) and 7 % (PQ) brighter.
# So the tolerances leave room for other encoder builds while saturation, three tolerances away, tells
# the grey picture from a tone-mapped one; luma catches HLG's and any gross error (a black frame).
LUMA_TOLERANCE = 0.10
SATURATION_TOLERANCE = 0.15
# Measure every output the same way: JPEG is full range and GIF is RGB, so all are first converted to
# TV-range BT.709 YUV (a no-op for the MP4 and WebM outputs).
MEASURE = "scale=out_range=tv:out_color_matrix=bt709,format=yuv444p,signalstats,metadata=print:file=-"
TRANSFERS = {"hlg": "arib-std-b67", "pq": "smpte2084"}
PICTURE_FORMATS = {"720p": "mp4", "360p": "mp4", "webm": "webm", "gif": "gif", "thumbnail": "jpg"}


def make_hdr_clip(path: Path, transfer: str) -> Path:
    """1 s of testsrc2 at 320x240, converted into real HLG or PQ content (see the module's docstring)."""
    to_hdr = (
        "format=gbrp,zscale=tin=bt709:pin=bt709:rin=pc:t=linear:p=bt709:npl=203,format=gbrpf32le,"
        f"zscale=p=2020,zscale=t={transfer}:m=2020_ncl:r=tv:npl=203,format=yuv420p10le"
    )
    tags = f"colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc"
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-vf", to_hdr,
         "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", f"log-level=error:{tags}",
         "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc",
         str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def picture_stats(path: Path, filters: str = "", input_args: Sequence[str] = ()) -> tuple[float, float]:
    """Mean luma (signalstats YAVG) and mean saturation (SATAVG) over the frames of ``path``, after
    ``filters`` if any."""
    graph = f"{filters},{MEASURE}" if filters else MEASURE
    done = subprocess.run(
        [ffmpeg_path(), "-v", "error", *input_args, "-i", str(path), "-vf", graph, "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    values: dict[str, list[float]] = {"YAVG": [], "SATAVG": []}
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")  # lavfi.signalstats.YAVG=101.3
        key = name.rpartition(".")[2]
        if key in values:
            values[key].append(float(value))
    assert values["YAVG"] and len(values["YAVG"]) == len(values["SATAVG"]), done.stdout[-500:]
    return sum(values["YAVG"]) / len(values["YAVG"]), sum(values["SATAVG"]) / len(values["SATAVG"])


def close(measured: tuple[float, float], reference: tuple[float, float]) -> bool:
    (luma, saturation), (ref_luma, ref_saturation) = measured, reference
    return (
        abs(luma - ref_luma) <= LUMA_TOLERANCE * ref_luma
        and abs(saturation - ref_saturation) <= SATURATION_TOLERANCE * ref_saturation
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hdr")
    made = {name: make_hdr_clip(folder / f"{name}.mp4", transfer) for name, transfer in TRANSFERS.items()}
    made["sdr"] = make_clip_file(folder / "sdr.mp4", seconds=1.0, audio=False)
    return made


def convert(source: Path, format_id: str, info: SourceInfo, folder: Path) -> Path:
    preset = PRESETS[format_id]
    output = folder / f"{source.stem}-{format_id}.{PICTURE_FORMATS[format_id]}"
    FFmpeg().convert(source, output, preset.output_args(info), input_args=preset.input_args(info))
    return output


_measured: dict[tuple[Path, str], tuple[tuple[float, float], tuple[float, float]]] = {}


def reference_and_naive(source: Path, format_id: str, info: SourceInfo) -> tuple[tuple[float, float], ...]:
    """The reference tone map and the naive conversion of the frames the format shows: the whole clip,
    or for the thumbnail the one frame it picks (the same seek and pick, before either conversion)."""
    frames = "thumbnail" if format_id == "thumbnail" else "clip"
    if (source, frames) not in _measured:
        if frames == "clip":
            both = picture_stats(source, REFERENCE), picture_stats(source, NAIVE)
        else:
            seek, pick = PRESETS["thumbnail"].input_args(info), "thumbnail=n=12,{},trim=end_frame=1"
            both = picture_stats(source, pick.format(REFERENCE), seek), picture_stats(source, pick.format(NAIVE), seek)
        _measured[source, frames] = both
    return _measured[source, frames]


@pytest.mark.parametrize("format_id", PICTURE_FORMATS)
@pytest.mark.parametrize("kind", TRANSFERS)
def test_hdr_outputs_look_like_the_reference_tone_map(
    clips: dict[str, Path], kind: str, format_id: str, tmp_path: Path
) -> None:
    source = clips[kind]
    info = FFmpeg().probe(source)
    assert info.hdr and info.color_transfer == TRANSFERS[kind]
    output = convert(source, format_id, info, tmp_path)
    reference, naive = reference_and_naive(source, format_id, info)
    measured = picture_stats(output)
    assert close(measured, reference), (measured, reference)
    # The grey picture is far from it: this test fails without tone mapping (see also the next test).
    assert not close(naive, reference), (naive, reference)
    assert measured[1] > 1.3 * naive[1]

    if PICTURE_FORMATS[format_id] in ("mp4", "webm"):
        video = next(s for s in probe_file(output)["streams"] if s["codec_type"] == "video")
        tags = (video.get("color_primaries"), video.get("color_transfer"), video.get("color_space"))
        assert tags == ("bt709", "bt709", "bt709")
        assert video["pix_fmt"] == "yuv420p"


@pytest.mark.parametrize("kind", TRANSFERS)
def test_without_tone_mapping_the_output_is_grey(clips: dict[str, Path], kind: str, tmp_path: Path) -> None:
    # The same preset given the source as if it had no colour tags: what the converter did before.
    source = clips[kind]
    info = FFmpeg().probe(source)
    untagged = info.model_copy(update={"color_transfer": None, "color_primaries": None, "color_space": None})
    output = convert(source, "360p", untagged, tmp_path)
    reference = picture_stats(source, REFERENCE)
    measured = picture_stats(output)
    assert not close(measured, reference)
    assert measured[1] < 0.6 * reference[1]  # washed out: well under two thirds of the saturation


def test_a_segmented_hdr_output_is_tone_mapped_and_tagged(clips: dict[str, Path], tmp_path: Path) -> None:
    # Long videos: one piece encoded and joined as the segment path does (WebM: the case where the
    # joined file would lose its tags, NUT pieces carrying none).
    source, ffmpeg = clips["hlg"], FFmpeg()
    info = ffmpeg.probe(source)
    plan = SegmentPlan(source=info, starts=[0.0], duration=info.duration or 1.0, has_audio=False)
    pieces = segments.encode_piece(ffmpeg, [PRESETS["webm"]], plan, 0, source, tmp_path, timeout=60)
    joined = segments.assemble(ffmpeg, PRESETS["webm"], plan, pieces, [], tmp_path / "joined.webm", timeout=60)
    video = next(s for s in probe_file(joined)["streams"] if s["codec_type"] == "video")
    assert (video.get("color_primaries"), video.get("color_transfer"), video.get("color_space")) == ("bt709",) * 3
    assert close(picture_stats(joined), picture_stats(source, REFERENCE))


def test_sdr_outputs_are_untagged_and_unchanged(clips: dict[str, Path], tmp_path: Path) -> None:
    source = clips["sdr"]
    info = FFmpeg().probe(source)
    assert not info.hdr
    original = picture_stats(source)
    for format_id in ("360p", "webm"):
        output = convert(source, format_id, info, tmp_path)
        video = next(s for s in probe_file(output)["streams"] if s["codec_type"] == "video")
        assert video.get("color_primaries") is None and video.get("color_transfer") is None
        luma, saturation = picture_stats(output)
        assert abs(luma - original[0]) <= 0.02 * original[0]  # as the source: nothing was converted
        assert abs(saturation - original[1]) <= 0.02 * original[1]
