"""Concurrent admissions against one owner's quota, spread over several API tasks (their Quotas), shared by
the unit tests (memory store) and the moto ones (S3)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from video_converter.errors import OverLimit
from video_converter.owners import Owner
from video_converter.quotas import Quotas


def admitted(tasks: list[Quotas], owner: Owner, tries: int, threads: int = 4) -> int:
    """How many of ``tries`` reservations made at once, in turn on each task, got a place."""

    def reserve(n: int) -> bool:
        try:
            tasks[n % len(tasks)].reserve(owner)
        except OverLimit:
            return False
        return True

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(reserve, range(tries))).count(True)
