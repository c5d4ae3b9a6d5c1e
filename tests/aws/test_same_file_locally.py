"""A segmented MP4 joined by copy is the same file on S3 (moto: UploadPartCopy) and on disk (file
copies): the same plan carried out by either store, byte for byte."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from moto.s3 import models as moto_s3_models

from api.main import create_app
from tests.aws.conftest import settings_for
from video_converter import mp4join
from video_converter.config import Settings
from video_converter.ffmpeg import ffmpeg_path
from video_converter.ffmpeg.runner import child_env
from video_converter.messages import process_message
from video_converter.model import OutputStatus
from video_converter.owners import AuthMode
from video_converter.runtime import build_runtime

pytestmark = pytest.mark.aws


def converted(settings: Settings, clip: Path) -> tuple[str, int]:
    """Convert ``clip`` to MP4 720p in pieces under these settings, every message by hand: the output's
    digest and how many pieces it was joined from."""
    rt = build_runtime(settings)
    try:
        with clip.open("rb") as fh:
            created = TestClient(create_app(rt)).post(
                "/api/jobs", files={"file": ("long.mp4", fh)}, data={"formats": "720p"}
            )
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        while (message := rt.queue.receive()) is not None:
            process_message(rt, message)
            rt.queue.ack(message)
        record = rt.jobs.output(job_id, "720p")
        assert record.status is OutputStatus.COMPLETED and record.key is not None, record
        return hashlib.sha256(rt.converted.get_bytes(record.key)).hexdigest(), record.segments
    finally:
        rt.close()


def test_a_segmented_output_is_the_same_file_on_s3_and_on_disk(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pieces of a few hundred KB: S3's part minimum lowered so that they are copied, not carried
    monkeypatch.setattr(mp4join, "MIN_PART", 8 * 1024)
    monkeypatch.setattr(moto_s3_models, "S3_UPLOAD_PART_MIN_SIZE", 8 * 1024)
    clip = tmp_path / "long.mp4"
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=6",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", str(clip)],
        check=True, timeout=120, env=child_env(),
    )  # fmt: skip
    common: dict[str, Any] = {"segment_seconds": 2, "auth": AuthMode.NONE}
    on_s3 = converted(settings_for(aws, tmp_path / "s3", **common), clip)
    on_disk = converted(Settings(data_dir=tmp_path / "local", workers=0, _env_file=None, **common), clip)
    assert on_s3[1] == on_disk[1] == 3
    assert on_s3[0] == on_disk[0]
