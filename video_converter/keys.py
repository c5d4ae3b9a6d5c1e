"""Object-key layout, shared by disk and S3.

Upload store:     {job_id}/source
Converted store:  {job_id}/job.json                     the job record
                  {job_id}/status/{format}.json         one output record per format
                  {job_id}/{stem}_{format}.{ext}        the result
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 80


def safe_stem(filename: str) -> str:
    """A file-name stem that is safe in a key, a path and a Content-Disposition header.

    User file names never become paths: only letters, digits, dot, dash and underscore survive.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_stem).strip("._-")[:MAX_STEM].strip("._-")
    return cleaned or "video"


def source_key(job_id: str) -> str:
    return f"{job_id}/source"


def job_key(job_id: str) -> str:
    return f"{job_id}/job.json"


def status_key(job_id: str, format_id: str) -> str:
    return f"{job_id}/status/{format_id}.json"


def output_filename(stem: str, format_id: str, extension: str) -> str:
    return f"{stem}_{format_id}.{extension}"


def output_key(job_id: str, stem: str, format_id: str, extension: str) -> str:
    return f"{job_id}/{output_filename(stem, format_id, extension)}"
