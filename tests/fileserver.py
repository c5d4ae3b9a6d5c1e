"""A small HTTP file server on 127.0.0.1 for imports from a link: ``/hop/N`` redirects N times before
``/clip.mp4``; any other path is a file of ``files`` or a 404."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serve_files(files: dict[str, bytes]) -> Iterator[str]:
    """Serve ``files`` (path -> bytes); yield the server's base URL."""

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/hop/"):
                left = int(self.path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", f"/hop/{left - 1}" if left > 1 else "/clip.mp4")
                self.end_headers()
                return
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
