"""Command line: ``serve`` (API + workers, what ``make run`` starts), ``worker`` (workers only) and
``webhook-secret`` (the key webhook receivers verify ``X-Webhook-Signature`` with)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from . import logsafe, telemetry
from .config import Settings, get_settings
from .housekeeping import start_background
from .runtime import build_runtime, webhook_secret
from .worker import start_workers, stop_workers

log = logging.getLogger("video_converter")


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
    sub.add_parser("webhook-secret", help="print the key webhook receivers verify X-Webhook-Signature with")
    args = parser.parse_args(argv)
    settings = get_settings()
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


if __name__ == "__main__":
    main()
