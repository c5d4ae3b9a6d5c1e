"""Preset argument lists: what each public format asks FFmpeg for."""

from __future__ import annotations

import pytest

from video_converter.model import SourceInfo
from video_converter.presets import (
    CAP_FPS,
    GIF_MAX_SECONDS,
    GIF_MAX_WIDTH,
    MAX_FPS,
    NO_METADATA,
    PRESETS,
    UnsuitableSource,
    thumbnail_time,
)
from video_converter.views import FormatView

AV = SourceInfo(duration=30.0, width=1920, height=1080, video_codec="h264", audio_codec="aac")
SILENT = SourceInfo(duration=30.0, width=1920, height=1080, video_codec="h264")
AUDIO_ONLY = SourceInfo(duration=30.0, audio_codec="mp3")
MP4_HEIGHTS = {"1080p": 1080, "720p": 720, "480p": 480, "360p": 360}


def value_after(args: list[str], option: str) -> str:
    return args[args.index(option) + 1]


def test_public_format_ids_are_exactly_the_api_contract() -> None:
    assert list(PRESETS) == ["1080p", "720p", "480p", "360p", "webm", "mp3", "gif", "thumbnail", "hls", "storyboard"]


def test_public_view_shape() -> None:
    for preset in PRESETS.values():
        view = FormatView.of(preset).model_dump(mode="json")
        assert set(view) == {"id", "label", "extension", "media_type", "kind", "description", "max_height", "max_width"}
        assert view["id"] == preset.id
        assert view["kind"] == preset.kind.value


@pytest.mark.parametrize(("format_id", "height"), MP4_HEIGHTS.items())
def test_mp4_presets(format_id: str, height: int) -> None:
    preset = PRESETS[format_id]
    assert (preset.extension, preset.media_type, preset.max_height) == ("mp4", "video/mp4", height)
    args = preset.output_args(AV)
    assert value_after(args, "-c:v") == "libx264"
    assert value_after(args, "-pix_fmt") == "yuv420p"
    assert value_after(args, "-movflags") == "+faststart"
    assert value_after(args, "-f") == "mp4"
    vf = value_after(args, "-vf")
    # the short side capped at the preset (never upscaled: min with the source), the other even via -2
    assert f"h='if(gte(iw,ih),min({height},trunc(ih/2)*2),-2)'" in vf
    assert f"w='if(gte(iw,ih),-2,min({height},trunc(iw/2)*2))'" in vf
    assert vf.endswith("format=yuv420p")
    assert "0:v:0" in args


@pytest.mark.parametrize("format_id", MP4_HEIGHTS)
def test_mp4_audio_mapping_follows_the_source(format_id: str) -> None:
    with_audio = PRESETS[format_id].output_args(AV)
    assert "0:a:0" in with_audio
    assert value_after(with_audio, "-c:a") == "aac"
    assert "-an" not in with_audio

    silent = PRESETS[format_id].output_args(SILENT)
    assert "-an" in silent
    assert "0:a:0" not in silent
    assert "-c:a" not in silent


def test_mp4_maxrate_decreases_with_height() -> None:
    rates = [int(value_after(PRESETS[f].output_args(AV), "-maxrate").rstrip("k")) for f in MP4_HEIGHTS]
    assert rates == sorted(rates, reverse=True)
    for f in MP4_HEIGHTS:
        args = PRESETS[f].output_args(AV)
        assert int(value_after(args, "-bufsize").rstrip("k")) == 2 * int(value_after(args, "-maxrate").rstrip("k"))


def test_webm_preset() -> None:
    args = PRESETS["webm"].output_args(AV)
    assert value_after(args, "-c:v") == "libvpx-vp9"
    assert value_after(args, "-c:a") == "libopus"
    assert value_after(args, "-f") == "webm"
    assert "min(720,trunc(ih/2)*2)" in value_after(args, "-vf")
    silent = PRESETS["webm"].output_args(SILENT)
    assert "-an" in silent and "libopus" not in silent


def test_mp3_preset() -> None:
    args = PRESETS["mp3"].output_args(AV)
    assert value_after(args, "-c:a") == "libmp3lame"
    assert "-vn" in args
    assert value_after(args, "-map") == "0:a:0"
    assert value_after(args, "-f") == "mp3"


def test_mp3_from_silent_source_is_refused_with_a_sentence() -> None:
    with pytest.raises(UnsuitableSource, match=r"^The source has no audio track, .*MP3\.$"):
        PRESETS["mp3"].check_source(SILENT)
    PRESETS["mp3"].check_source(AV)
    PRESETS["mp3"].check_source(AUDIO_ONLY)  # audio-only is fine for mp3


@pytest.mark.parametrize("format_id", ["1080p", "720p", "480p", "360p", "webm", "gif", "thumbnail"])
def test_visual_formats_refuse_audio_only_source(format_id: str) -> None:
    preset = PRESETS[format_id]
    with pytest.raises(UnsuitableSource, match=r"^The source has no video stream, .*\.$") as info:
        preset.check_source(AUDIO_ONLY)
    assert preset.label in str(info.value)
    preset.check_source(SILENT)  # a silent video is fine


def test_gif_limits() -> None:
    preset = PRESETS["gif"]
    assert (preset.max_seconds, preset.max_width) == (GIF_MAX_SECONDS, GIF_MAX_WIDTH) == (10, 480)
    args = preset.output_args(AV)
    assert "-t" not in args  # the runner cuts the input at max_seconds: the GIF only reads what it needs
    graph = value_after(args, "-filter_complex")
    # palettegen waits for the end of its input: the graph itself ends at the limit too, so a source
    # whose one frame lasts an hour (0.001 fps) does not become an hour of repeated frames in memory
    assert f"fps=12:eof_action=pass,trim=end={GIF_MAX_SECONDS}," in graph
    assert graph.index("scale=w='min(480,iw)'") < graph.index("split")  # small frames are buffered
    assert "scale=w='min(480,iw)':h=-2" in graph
    assert "palettegen" in graph and "paletteuse" in graph
    assert "-an" in args
    assert value_after(args, "-f") == "gif"


def test_thumbnail_args() -> None:
    args = PRESETS["thumbnail"].output_args(AV)
    assert value_after(args, "-frames:v") == "1"
    assert value_after(args, "-f") == "image2"
    assert PRESETS["thumbnail"].extension == "jpg"


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (None, 0.0),
        (0.0, 0.0),
        (1.0, 0.1),
        (10.0, 1.0),
        (49.0, 4.9),
        (50.0, 5.0),
        (3600.0, 5.0),
        (0.333, 0.0),
        (0.04, 0.0),
    ],  # short clips: no seek
)
def test_thumbnail_time(duration: float | None, expected: float) -> None:
    t = thumbnail_time(SourceInfo(duration=duration, video_codec="h264"))
    assert t == expected
    if duration:
        assert 0 <= t <= min(duration * 0.1, 5.0)
        assert t < duration


def test_only_thumbnail_seeks_before_input() -> None:
    assert PRESETS["thumbnail"].input_args(AV) == ["-ss", "3.0"]
    assert PRESETS["thumbnail"].input_args(SourceInfo(video_codec="h264")) == ["-ss", "0.0"]
    for format_id in PRESETS:
        if format_id != "thumbnail":
            assert PRESETS[format_id].input_args(AV) == []


ONE_FILE = [format_id for format_id, preset in PRESETS.items() if preset.stream is None]


@pytest.mark.parametrize("format_id", ONE_FILE)
def test_no_source_metadata_or_chapters_reach_outputs(format_id: str) -> None:
    args = PRESETS[format_id].output_args(AV)
    assert value_after(args, "-map_metadata") == "-1"
    assert value_after(args, "-map_chapters") == "-1"


@pytest.mark.parametrize("format_id", ["1080p", "720p", "480p", "360p", "webm"])
def test_video_timing_passes_through_and_is_capped_by_dropping(format_id: str) -> None:
    args = PRESETS[format_id].output_args(AV)
    assert value_after(args, "-fps_mode") == "vfr"  # never duplicate frames to fill a gap
    assert value_after(args, "-vf").startswith(CAP_FPS + ",")
    assert f"{1 / (MAX_FPS + 0.5):.5f}" in CAP_FPS and MAX_FPS == 60


@pytest.mark.parametrize(
    ("channels", "layout", "expected"),
    [
        (None, None, ["-ac", "2"]),  # an old record without channel facts
        (2, "stereo", ["-ac", "2"]),
        (6, "5.1", ["-ac", "2"]),  # FFmpeg's own matrix for named layouts
        (1, None, ["-af", "pan=stereo|c0=c0|c1=c0"]),
        (4, None, ["-af", "pan=stereo|c0<c0+c2|c1<c1+c3"]),
        (3, None, ["-af", "pan=stereo|c0<c0+c2|c1<c1"]),
    ],
)
def test_audio_is_stereo_whatever_the_layout(channels: int | None, layout: str | None, expected: list[str]) -> None:
    source = AV.model_copy(update={"audio_channels": channels, "audio_layout": layout})
    for format_id in ("720p", "webm", "mp3"):
        args = PRESETS[format_id].output_args(source)
        i = args.index(expected[0])
        assert args[i : i + 2] == expected


def test_sixty_four_unnamed_channels_are_mixed_into_two() -> None:
    source = AUDIO_ONLY.model_copy(update={"audio_channels": 64})
    pan = value_after(PRESETS["mp3"].output_args(source), "-af")
    left, right = pan.removeprefix("pan=stereo|c0<").split("|c1<")
    assert left.split("+") == [f"c{n}" for n in range(0, 64, 2)]
    assert right.split("+") == [f"c{n}" for n in range(1, 64, 2)]


@pytest.mark.parametrize("format_id", ONE_FILE)
def test_every_preset_sets_output_format_explicitly(format_id: str) -> None:
    # -f makes FFmpeg ignore the (user-derived) output extension
    args = PRESETS[format_id].output_args(AV)
    assert "-f" in args
    assert all(isinstance(a, str) for a in args)


@pytest.mark.parametrize(
    ("width", "height", "format_id", "note"),
    [
        (1920, 1080, "1080p", False),
        (1080, 1920, "1080p", False),  # portrait: the short side is the width
        (1280, 720, "1080p", True),
        (720, 1280, "1080p", True),
        (1280, 720, "720p", False),
        (640, 360, "webm", True),
        (640, 360, "gif", False),  # not a rendition size
        (640, 360, "mp3", False),
    ],
)
def test_size_note_when_the_source_is_smaller(width: int, height: int, format_id: str, note: bool) -> None:
    source = AV.model_copy(update={"width": width, "height": height})
    text = PRESETS[format_id].size_note(source)
    assert (text is not None) == note
    if text:
        assert f"{width}x{height}" in text and "never upscaled" in text


# --- HDR sources: tone mapped to BT.709 SDR, and tagged so -----------------------------------------

HLG = AV.model_copy(update={"color_transfer": "arib-std-b67", "color_primaries": "bt2020", "color_space": "bt2020nc"})
PQ = HLG.model_copy(update={"color_transfer": "smpte2084"})
PICTURE_FORMATS = ["1080p", "720p", "480p", "360p", "webm", "gif", "thumbnail"]
TAGS_709 = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]


def picture_filters(format_id: str, source: SourceInfo) -> str:
    args = PRESETS[format_id].output_args(source)
    return value_after(args, "-filter_complex" if "-filter_complex" in args else "-vf")


# The picture filters of SDR sources, as they were before HDR sources were tone mapped: not one
# character of them changes.
_SCALE_MP4 = "scale=w='if(gte(iw,ih),-2,min({0},trunc(iw/2)*2))':h='if(gte(iw,ih),min({0},trunc(ih/2)*2),-2)'"
_SDR_VIDEO = f"{CAP_FPS},scale=w='trunc(iw*sar/2)*2':h=ih,setsar=1,{_SCALE_MP4}:flags=bicubic,setsar=1,format=yuv420p"
SDR_FILTERS = {
    "720p": _SDR_VIDEO.format(720),
    "360p": _SDR_VIDEO.format(360),
    "webm": _SDR_VIDEO.format(720),
    "gif": "[0:v:0]fps=12:eof_action=pass,trim=end=10,scale=w='trunc(iw*sar/2)*2':h=ih,setsar=1,"
    "scale=w='min(480,iw)':h=-2:flags=lanczos,setsar=1,split[a][b];"
    "[a]palettegen=max_colors=128:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5",
    "thumbnail": "thumbnail=n=12,scale=w='trunc(iw*sar/2)*2':h=ih,setsar=1,"
    "scale=w='min(1280,iw)':h='min(1280,ih)':force_original_aspect_ratio=decrease,setsar=1",
}


@pytest.mark.parametrize("format_id", SDR_FILTERS)
@pytest.mark.parametrize(
    "tags",
    [
        {},  # untagged
        {"color_transfer": "bt709", "color_primaries": "bt709", "color_space": "bt709"},
        {"color_transfer": "smpte170m", "color_primaries": "smpte170m", "color_space": "smpte170m"},
        {"color_transfer": "bt709", "color_primaries": "bt709", "color_space": "bt2020nc"},  # odd, but not HDR
    ],
)
def test_sdr_sources_keep_their_arguments(format_id: str, tags: dict[str, str]) -> None:
    source = AV.model_copy(update=tags)
    assert not source.hdr
    assert picture_filters(format_id, source) == SDR_FILTERS[format_id]
    args = PRESETS[format_id].output_args(source)
    assert args == PRESETS[format_id].output_args(AV)
    assert not {"-color_primaries", "-color_trc", "-colorspace"} & set(args)


@pytest.mark.parametrize("format_id", PICTURE_FORMATS)
@pytest.mark.parametrize(("source", "transfer"), [(HLG, "arib-std-b67"), (PQ, "smpte2084")])
def test_hdr_sources_are_tone_mapped_after_scaling_down(format_id: str, source: SourceInfo, transfer: str) -> None:
    graph = picture_filters(format_id, source)
    tone_map = (
        f"zscale=tin={transfer}:pin=2020:min=2020_ncl:t=linear:npl=100:p=709,format=gbrpf32le,"
        "tonemap=hable:desat=0,zscale=t=709:m=709:r=tv,format=yuv420p"
    )
    assert graph.count(tone_map) == 1
    # Scaled down first: the float steps run on the output-sized picture, not the 4K one.
    last_scale = graph.rindex("scale=w=")
    assert last_scale < graph.index(tone_map)
    if format_id == "gif":
        assert graph.index(tone_map) < graph.index("split")  # both the palette and the frames are SDR
    else:
        assert graph.endswith(tone_map)


@pytest.mark.parametrize("format_id", ["1080p", "720p", "480p", "360p", "webm"])
def test_video_from_hdr_is_tagged_bt709(format_id: str) -> None:
    args = PRESETS[format_id].output_args(HLG)
    i = args.index("-color_primaries")
    assert args[i : i + 6] == TAGS_709
    assert args.index("-c:v") < i < args.index("-fps_mode")  # video options, also in a segment's encode


def test_a_segment_of_an_hdr_source_is_tone_mapped_and_tagged() -> None:
    # Long videos are encoded in segments with the same picture arguments as a whole-file encode.
    for format_id in ("720p", "webm"):
        recipe = PRESETS[format_id].recipe
        assert recipe is not None
        segment = recipe.segment(PQ)
        assert "tonemap=hable:desat=0" in value_after(segment, "-vf")
        i = segment.index("-color_primaries")
        assert segment[i : i + 6] == TAGS_709
        sdr = recipe.segment(AV)
        assert "tonemap" not in value_after(sdr, "-vf") and "-color_primaries" not in sdr
        # The join copies the pieces; the tags are set again there (NUT pieces carry none).
        joined = recipe.assembly(PQ, with_audio=True)
        i = joined.index("-color_primaries")
        assert joined[i : i + 6] == TAGS_709 and value_after(joined, "-c:v") == "copy"
        assert recipe.assembly(AV, with_audio=True) == [
            "-map", "0:v:0", "-c:v", "copy", "-map", "1:a:0", "-c:a", "copy", *NO_METADATA, "-sn", "-dn",
            *recipe.container,
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("tags", "zscale_in"),
    [
        # Only the transfer is known: HDR video is BT.2020 with the non-constant-luminance matrix.
        ({"color_transfer": "arib-std-b67"}, "tin=arib-std-b67:pin=2020:min=2020_ncl"),
        ({"color_transfer": "smpte2084", "color_space": "bt709"}, "tin=smpte2084:pin=2020:min=709"),
        ({"color_transfer": "smpte2084", "color_primaries": "smpte432"}, "tin=smpte2084:pin=smpte432:min=2020_ncl"),
        # A tag zscale does not know, or a crafted one, never reaches the graph: the default does.
        ({"color_transfer": "arib-std-b67", "color_space": "ictcp"}, "tin=arib-std-b67:pin=2020:min=2020_ncl"),
        ({"color_transfer": "smpte2084", "color_primaries": "bt709,drawtext=x"}, "tin=smpte2084:pin=2020:min=2020_ncl"),
    ],
)
def test_hdr_input_tags_missing_or_unknown(tags: dict[str, str], zscale_in: str) -> None:
    graph = picture_filters("720p", AV.model_copy(update=tags))
    assert f"zscale={zscale_in}:t=linear:npl=100:p=709," in graph
    assert "drawtext" not in graph


@pytest.mark.parametrize("transfer", [None, "bt709", "bt2020-10"])
def test_bt2020_with_an_sdr_transfer_is_converted_without_a_tone_curve(transfer: str | None) -> None:
    # Wide-gamut SDR: its white is SDR white, so the tone curve (made for highlights far above it) would
    # only dim it; converting the primaries is what it needs.
    source = AV.model_copy(update={"color_transfer": transfer, "color_primaries": "bt2020"})
    assert source.hdr
    tin = {None: "709", "bt709": "709", "bt2020-10": "2020_10"}[transfer]
    for format_id in PICTURE_FORMATS:
        graph = picture_filters(format_id, source)
        assert f"zscale=tin={tin}:pin=2020:min=2020_ncl:t=709:p=709:m=709:r=tv,format=yuv420p" in graph
        assert "tonemap" not in graph and "linear" not in graph
    assert "-color_primaries" in PRESETS["720p"].output_args(source)


@pytest.mark.parametrize("format_id", ["gif", "thumbnail", "mp3"])
def test_image_and_audio_formats_carry_no_colour_options(format_id: str) -> None:
    assert "-color_primaries" not in PRESETS[format_id].output_args(HLG)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), [0, 1, 2, 3]),  # every size is below the source: four pictures
        ((1280, 720), [1, 1, 2, 3]),  # 1080p and 720p both keep 720 lines: 720p's picture for both
        ((854, 480), [2, 2, 2, 3]),  # 1080p, 720p and 480p all keep 480 lines: one picture, 480p's
        ((320, 240), [3, 3, 3, 3]),
        ((240, 320), [3, 3, 3, 3]),  # portrait: the short side counts
    ],
)
def test_sizes_a_source_is_too_small_for_share_the_smallest_ones_picture(
    size: tuple[int, int], expected: list[int]
) -> None:
    from video_converter.presets import shared_pictures

    source = AV.model_copy(update={"width": size[0], "height": size[1]})
    recipes = [PRESETS[f].recipe for f in ("1080p", "720p", "480p", "360p")]
    assert shared_pictures(source, [r for r in recipes if r is not None]) == expected
