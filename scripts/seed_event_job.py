"""Seed the job that the sample events in events/ name, so invoking the convert function has work to do.

    UPLOAD_BUCKET=... CONVERTED_BUCKET=... python scripts/seed_event_job.py [clip.mp4]

Uploads the clip (or a 4 s test clip made by FFmpeg when none is given) to ``{job_id}/source`` in the
upload bucket, and writes the job record and a "queued" status record per format to the converted
bucket, through the core's job creation, for the fixed job id of events/*.json. Running it again resets
the job (every output back to queued). Then:

    sam local invoke ConvertFunction -e events/convert_720p.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from video_converter import keys
from video_converter.jobs import new_job, register_job
from video_converter.model import JobRecord
from video_converter.records import JobStore
from video_converter.storage import Storage

EVENT_JOB_ID = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"  # the job_id in every events/*.json body
EVENT_FORMATS = ["720p", "360p", "thumbnail", "mp3"]  # every format the sample events ask for
FILENAME = "sample clip.mp4"


def seed(
    uploads: Storage,
    converted: Storage,
    clip: Path,
    *,
    job_id: str = EVENT_JOB_ID,
    formats: list[str] | None = None,
    filename: str = FILENAME,
) -> JobRecord:
    """Store ``clip`` as the job's original and (re)write its job record and queued output records, as
    job creation does but replacing the job if it exists (no messages are sent: the events are the
    messages)."""
    record = new_job(job_id, filename, list(formats or EVENT_FORMATS), clip.stat().st_size)
    uploads.put_file(keys.source_key(job_id), clip, "video/mp4")
    register_job(JobStore(converted), record, replace=True)  # a reset, not a creation: overwrite the job
    return record


def make_test_clip(path: Path, seconds: float = 4.0) -> Path:
    from video_converter.ffmpeg import ffmpeg_path

    argv = [
        ffmpeg_path(), "-hide_banner", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path),
    ]  # fmt: skip
    subprocess.run(argv, check=True, timeout=120)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path, help="video to upload (default: a generated test clip)")
    parser.add_argument("--upload-bucket", default=os.environ.get("UPLOAD_BUCKET", ""))
    parser.add_argument("--converted-bucket", default=os.environ.get("CONVERTED_BUCKET", ""))
    args = parser.parse_args(argv)
    if not args.upload_bucket or not args.converted_bucket:
        parser.error("set UPLOAD_BUCKET and CONVERTED_BUCKET (or pass --upload-bucket/--converted-bucket)")
    if args.clip is not None and not args.clip.is_file():
        parser.error(f"{args.clip} is not a file")

    from video_converter.storage.s3 import S3Storage

    uploads, converted = S3Storage(args.upload_bucket), S3Storage(args.converted_bucket)
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or make_test_clip(Path(tmp) / "clip.mp4")
        record = seed(uploads, converted, clip)
    print(
        json.dumps(
            {
                "job_id": record.job_id,
                "formats": record.formats,
                "source": f"s3://{args.upload_bucket}/{record.source_key}",
                "records": f"s3://{args.converted_bucket}/{record.job_id}/",
                "next": "sam local invoke ConvertFunction -e events/convert_720p.json",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
