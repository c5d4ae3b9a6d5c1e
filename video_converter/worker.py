"""The local worker loop: take messages off the queue, hand each to ``process_message``, and translate
its outcome into queue calls. The same loop polls SQLite locally and SQS in the container worker."""

from __future__ import annotations

import logging
import threading

from .messages import process_message
from .outcome import Action, Outcome
from .queues import Message
from .runtime import Runtime

log = logging.getLogger(__name__)


class Worker:
    """Takes messages off the runtime's queue one at a time and converts them, until ``stop`` is set."""

    def __init__(self, rt: Runtime, stop: threading.Event, *, heartbeat: int | None = None) -> None:
        self.rt, self.stop = rt, stop
        self.heartbeat = heartbeat or rt.settings.visibility_timeout

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.rt.queue.receive(wait_seconds=self.rt.poll_wait)
            except Exception:
                log.exception("receiving from the queue failed; retrying shortly")
                self.stop.wait(2.0)
                continue
            if message is None:
                continue
            if self.stop.is_set():  # received while stopping: give it back untouched, not as an attempt
                self._release(message)
                continue
            try:
                self.handle(message)
            except Exception:  # an ack or visibility call failed: the message comes back by itself
                log.exception("handling message %s failed", message.id)
                self.stop.wait(2.0)

    def handle(self, message: Message) -> Outcome:
        done = threading.Event()
        beat = threading.Thread(target=self._keep_hidden, args=(message, done), daemon=True)
        beat.start()
        try:
            outcome = process_message(self.rt, message, cancel=self.stop)
        finally:
            done.set()
            beat.join(timeout=5)
        if outcome.action is Action.ACK:
            self.rt.queue.ack(message)
        elif outcome.action is Action.RETRY:
            self.rt.queue.set_visibility(message, outcome.delay)
        else:  # RELEASE: back (at once, or after a wait for disk space); this delivery is not an attempt
            self.rt.queue.release(message, outcome.delay)
        return outcome

    def _release(self, message: Message) -> None:
        try:
            self.rt.queue.release(message)
        except Exception:
            log.exception("could not hand message %s back; it returns after its visibility timeout", message.id)

    def _keep_hidden(self, message: Message, done: threading.Event) -> None:
        """Extend the message's visibility while the conversion runs, so no one else picks it up."""
        interval = max(1.0, self.heartbeat / 3)
        while not done.wait(interval):
            try:
                self.rt.queue.set_visibility(message, self.heartbeat)
            except Exception:
                log.exception("heartbeat failed for %s", message.id)


def start_workers(rt: Runtime, stop: threading.Event) -> list[threading.Thread]:
    """``settings.workers`` worker threads."""
    threads = []
    for n in range(rt.settings.workers):
        thread = threading.Thread(target=Worker(rt, stop).run, name=f"worker-{n + 1}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def stop_workers(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Running conversions are cancelled and their messages handed back, so a restart finishes them."""
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
