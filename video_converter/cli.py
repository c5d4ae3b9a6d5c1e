"""Command line: ``serve`` (API + workers, what ``make run`` starts), ``worker`` (workers only),
``webhook-secret`` (the key webhook receivers verify ``X-Signature`` with) and ``keys`` (API keys:
create, list, revoke, in the stores the server reads: the same DATA_DIR / BACKEND settings)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

from . import logsafe, telemetry
from .apikeys import ApiKey, KeyStore, UnknownKey
from .config import Settings, get_settings
from .housekeeping import start_background
from .runtime import build_runtime, webhook_secret
from .worker import start_workers, stop_workers

log = logging.getLogger("video_converter")
N = TypeVar("N", int, float)


def _setup_logging() -> None:
    # JSON lines (with job_id, format and attempt while a message is worked on); LOG_FORMAT=text for a terminal
    telemetry.configure_logging(os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FORMAT", "json"))
    logsafe.install()


def work(settings: Settings) -> None:
    if settings.workers < 1:
        raise SystemExit("WORKERS must be at least 1 for the worker command.")
    rt = build_runtime(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threads = start_background(rt, stop) + start_workers(rt, stop)
    log.info("%d worker(s) polling the %s queue", settings.workers, settings.backend)
    stop.wait()
    stop_workers(threads, stop)
    rt.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="video-converter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the web UI and API, with WORKERS conversions at a time")
    sub.add_parser("worker", help="only convert: poll the queue with WORKERS workers")
    sub.add_parser("webhook-secret", help="print the key webhook receivers verify X-Signature with")
    _keys_parser(sub.add_parser("keys", help="API keys (AUTH=keys): create, list, revoke"))
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "keys":
        keys_command(settings, args)
        return
    if args.command == "webhook-secret":
        secret = webhook_secret(settings)
        if not secret:
            raise SystemExit("Webhooks are off: set WEBHOOK_SECRET (AWS mode needs it).")
        print(secret)
        return
    _setup_logging()
    if args.command == "serve":
        from api.server import serve  # the API and uvicorn load only for `serve`

        serve(settings)
    else:
        work(settings)


def _keys_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="make a key and print it once, alone on the last line")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--max-concurrent-jobs", type=_positive(int), help="unfinished jobs at once")
    create.add_argument("--max-source-minutes-per-day", type=_positive(float), help="work a day, in minutes")
    sub.add_parser("list", help="every key: id, name, created, revoked, limits (never the key)")
    revoke = sub.add_parser("revoke", help="stop a key working (within KEY_CACHE_SECONDS on every API task)")
    revoke.add_argument("key_id")


def _positive(kind: type[N]) -> Callable[[str], N]:
    def parse(text: str) -> N:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    return parse


def keys_command(settings: Settings, args: argparse.Namespace) -> None:
    rt = build_runtime(settings)
    try:
        store = KeyStore(rt.converted)
        if args.keys_command == "create":
            record, key = store.create(
                args.name,
                max_concurrent_jobs=args.max_concurrent_jobs,
                max_source_minutes_per_day=args.max_source_minutes_per_day,
            )
            print(f"Created API key {record.key_id} ({record.name}); {_limits(record)}.")
            print("It is shown only this once: keep it secret. Send it as 'Authorization: Bearer <key>'.")
            print(key)
        elif args.keys_command == "list":
            for record in store.list():
                state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "active"
                created = f"{record.created_at:%Y-%m-%d %H:%M}"
                print(f"{record.key_id}  {created}  {state:<24}  {record.name}  ({_limits(record)})")
        else:
            try:
                record = store.revoke(args.key_id)
            except UnknownKey as exc:
                raise SystemExit(str(exc)) from None
            print(f"Revoked API key {record.key_id} ({record.name}): refused within {settings.key_cache_seconds:g} s.")
    finally:
        rt.close()


def _limits(record: ApiKey) -> str:
    jobs = record.max_concurrent_jobs
    minutes = record.max_source_minutes_per_day
    return (
        f"{'the server default' if jobs is None else jobs} unfinished jobs at once, "
        f"{'the server default' if minutes is None else f'{minutes:g}'} source minutes a day"
    )


if __name__ == "__main__":
    main()
