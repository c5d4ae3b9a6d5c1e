"""Serve the app with uvicorn in the foreground, with the workers beside it (what ``make run`` starts)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from api.main import create_app
from api.request_limits import MAX_HEADER_BYTES
from video_converter import logsafe
from video_converter.config import Settings
from video_converter.housekeeping import start_background
from video_converter.runtime import build_runtime
from video_converter.worker import start_workers, stop_workers

log = logging.getLogger("video_converter")


class GracefulServer(uvicorn.Server):
    """Lets the workers hand their messages back before the process exits.

    uvicorn re-raises SIGINT/SIGTERM once it has shut down, which would kill the process before the
    worker threads cancel FFmpeg and return their messages to the queue; this server exits normally.
    """

    def __init__(self, config: uvicorn.Config, stop: threading.Event) -> None:
        super().__init__(config)
        self.stop = stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop.set()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """Behind a load balancer (ECS Express Mode, Copilot) the scheme the browser used arrives in
    X-Forwarded-Proto. uvicorn believes it only from the addresses in FORWARDED_ALLOW_IPS (default:
    this host), so the deployments set it to the load balancer's reach ("*": only it can reach the
    task); redirects the app builds then keep https instead of downgrading to http. Its access log
    keeps no signed link (``logsafe.redact_access_log``)."""
    logsafe.redact_access_log()
    # h11, not httptools: only h11 refuses an oversized header block before buffering all of it.
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, proxy_headers=True, log_config=None,
        http="h11", h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )  # fmt: skip


def serve(settings: Settings) -> None:
    rt = build_runtime(settings)
    app = create_app(rt)
    stop = threading.Event()
    threads = start_background(rt, stop) + start_workers(rt, stop)
    rt.spool_uploads_in_scratch()
    plural = "" if settings.workers == 1 else "s"
    log.info(
        "serving on http://%s:%d (%s backend, %d worker%s)",
        settings.host, settings.port, settings.backend, settings.workers, plural,
    )  # fmt: skip
    config = uvicorn_config(app, settings)
    try:
        GracefulServer(config, stop).run()  # returns on Ctrl-C or SIGTERM
    finally:
        stop_workers(threads, stop)
        rt.close()
        log.info("stopped")
