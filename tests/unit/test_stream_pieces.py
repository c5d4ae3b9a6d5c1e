"""A stream in pieces: how long the pieces are (on the stream's grid), which pictures a piece is encoded
to for the MP4 sizes and a stream together, and the recipe its pieces and sound follow."""

from __future__ import annotations

import pytest

from video_converter import segments
from video_converter.model import SourceInfo
from video_converter.presets import GOP_SECONDS, PRESETS, pictures_of
from video_converter.segmenting import piece_seconds


@pytest.mark.parametrize(
    ("formats", "seconds", "expected"),
    [
        (["720p"], 7.0, 7.0),  # no stream: SEGMENT_SECONDS as it is
        (["720p", "hls"], 60.0, 60.0),  # already whole 6 s segments
        (["hls"], 50.0, 54.0),  # rounded up to whole segments
        (["hls"], 4.0, 4.0),  # shorter than a segment: whole 2 s GOPs
        (["hls", "mp3"], 3.0, 4.0),
    ],
)
def test_pieces_of_a_job_with_a_stream_are_on_its_grid(formats: list[str], seconds: float, expected: float) -> None:
    assert piece_seconds(formats, seconds, 6) == expected
    assert expected % GOP_SECONDS == 0 or "hls" not in formats


def test_mp4_sizes_beside_a_stream_are_its_aligned_renditions_encoded_once() -> None:
    source = SourceInfo(width=854, height=480, has_video=True, duration=30.0)
    presets = [PRESETS["480p"], PRESETS["hls"]]
    recipes, takes = pictures_of(presets, source)
    assert [r.size for r in recipes] == [480, 360]
    assert all(r.gop_seconds == GOP_SECONDS for r in recipes)
    assert takes == [[0], [0, 1]]  # the stream's 480p rendition is the 480p MP4's picture
    alone, _ = pictures_of([PRESETS["480p"]], source)
    assert alone[0].gop_seconds is None  # without a stream, the encoder places keyframes


def test_a_stream_pieces_and_sound_follow_its_largest_rendition() -> None:
    hls = PRESETS["hls"]
    recipe = segments.recipe_of(hls)
    assert recipe is not None and recipe.gop_seconds == GOP_SECONDS
    assert segments.piece_extension(recipe) == "mp4" and segments.sound_extension(recipe) == "m4a"
    assert segments.piece_recipes([PRESETS["360p"], hls])[0] == PRESETS["360p"].recipe
    with pytest.raises(ValueError, match="Only video formats"):
        segments.piece_recipes([PRESETS["mp3"]])
