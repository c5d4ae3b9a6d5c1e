"""Command line: ``serve`` (API + workers, what ``make run`` starts) and ``worker`` (workers only)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from .backends import build_converter
from .config import Settings, get_settings
from .jobs import Converter
from .worker import Stores, Worker

log = logging.getLogger("video_converter")


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def start_workers(converter: Converter, settings: Settings, stop: threading.Event) -> list[threading.Thread]:
    workdir = None
    if settings.backend == "local":
        workdir = Path(settings.data_dir) / "tmp"
        workdir.mkdir(parents=True, exist_ok=True)
    stores = Stores(converter.uploads, converter.converted)
    threads = []
    for n in range(settings.workers):
        worker = Worker(converter.queue, stores, settings, stop, workdir=workdir)
        thread = threading.Thread(target=worker.run, name=f"worker-{n + 1}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def stop_workers(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Running conversions are cancelled and their messages handed back, so a restart finishes them."""
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def serve(settings: Settings) -> None:
    import uvicorn

    from api.main import create_app

    converter = build_converter(settings)
    app = create_app(settings, converter)
    stop = threading.Event()
    threads = start_workers(converter, settings, stop)
    log.info(
        "serving on http://%s:%d (%s backend, %d worker%s)",
        settings.host, settings.port, settings.backend, settings.workers, "" if settings.workers == 1 else "s",
    )  # fmt: skip
    config = uvicorn.Config(app, host=settings.host, port=settings.port, proxy_headers=True, log_config=None)
    try:
        uvicorn.Server(config).run()  # returns on Ctrl-C or SIGTERM
    finally:
        stop_workers(threads, stop)
        log.info("stopped")


def work(settings: Settings) -> None:
    if settings.workers < 1:
        raise SystemExit("WORKERS must be at least 1 for the worker command.")
    converter = build_converter(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threads = start_workers(converter, settings, stop)
    log.info("%d worker(s) polling the %s queue", len(threads), settings.backend)
    stop.wait()
    stop_workers(threads, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="video-converter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the web UI and API, with WORKERS conversions at a time")
    sub.add_parser("worker", help="only convert: poll the queue with WORKERS workers")
    args = parser.parse_args(argv)
    _setup_logging()
    settings = get_settings()
    if args.command == "serve":
        serve(settings)
    else:
        work(settings)


if __name__ == "__main__":
    main()
