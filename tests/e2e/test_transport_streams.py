"""MPEG transport streams (.ts from DVB and cameras, .m2ts/.mts from Blu-ray and AVCHD), made in each test,
converted to MP4 through the real conversion path and checked by probing the output.

The bundled static FFmpeg crashed (SIGSEGV) on every one of them on a Debian host until its children ran
without the host's gconv modules (``GCONV_PATH`` in ffmpeg.runner._child_env).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Env, make_clip_file, probe_file
from video_converter.model import OutputStatus

pytestmark = pytest.mark.e2e

H264_AAC: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
# Broadcast SD: MPEG-2 video coded as interlaced fields (top field first) with AC-3 audio.
MPEG2_AC3_INTERLACED: tuple[str, ...] = (
    "-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1", "-vf", "setfield=tff", "-pix_fmt", "yuv420p",
)  # fmt: skip


def transport_stream(path: Path, video: tuple[str, ...], audio_codec: str) -> Path:
    """Two seconds of test pattern and tone in an MPEG-TS container (M2TS framing for .m2ts/.mts)."""
    m2ts = ("-mpegts_m2ts_mode", "1") if path.suffix in (".m2ts", ".mts") else ()
    extra = ("-c:a", audio_codec, "-f", "mpegts", *m2ts)
    return make_clip_file(path, seconds=2, size="640x480", encoder=video, extra=extra)


CASES = [
    ("clip.ts", H264_AAC, "aac"),
    ("clip.m2ts", H264_AAC, "aac"),
    ("clip.mts", H264_AAC, "aac"),
    ("broadcast.ts", MPEG2_AC3_INTERLACED, "ac3"),
    ("broadcast.m2ts", MPEG2_AC3_INTERLACED, "ac3"),
    ("broadcast.mts", MPEG2_AC3_INTERLACED, "ac3"),
]


@pytest.mark.parametrize(("name", "video", "audio_codec"), CASES)
def test_transport_stream_converts_to_mp4(
    env: Env, tmp_path: Path, name: str, video: tuple[str, ...], audio_codec: str
) -> None:
    source = transport_stream(tmp_path / name, video, audio_codec)
    probed = {s["codec_type"]: s for s in probe_file(source)["streams"]}
    assert probed["audio"]["codec_name"] == audio_codec
    if "mpeg2video" in video:
        assert probed["video"]["codec_name"] == "mpeg2video" and probed["video"]["field_order"] == "tt"

    job_id = env.job(source, ["360p"], name)
    env.take()
    env.convert(job_id, "360p")
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.COMPLETED, record.error

    output = probe_file(env.output_file(record, tmp_path))
    streams = {s["codec_type"]: s for s in output["streams"]}
    assert output["format"]["format_name"].startswith("mov,mp4")
    assert float(output["format"]["duration"]) == pytest.approx(2.0, abs=0.2)
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert (streams["video"]["width"], streams["video"]["height"]) == (480, 360)
    assert streams["video"].get("field_order", "progressive") == "progressive"  # deinterlaced
