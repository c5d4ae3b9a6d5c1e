"""Request limits as pure ASGI middleware: bodies are counted while they are read, headers bounded.

Every body is limited to MAX_BODY_BYTES (JSON, forms, anything), except multipart bodies on the two
upload routes, which may carry the file: MAX_UPLOAD_BYTES plus room for the form around it. The count
is taken on the stream, so a chunked body without Content-Length stops at the limit too (413) instead
of filling the disk with spool files. A client that goes away mid-upload is one log line, not a
traceback; what it sent was spooled to unnamed temporary files, which vanish with them.
"""

from __future__ import annotations

import json
import logging
import re

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from video_converter.limits import UPLOAD_SLACK_BYTES, human_bytes
from video_converter.multipart import MAX_PART

log = logging.getLogger(__name__)

# Header bytes per request: far above what a browser sends here (no cookies), far below a flood.
# uvicorn's h11 parser refuses more before buffering it (api/server.py); this checks every protocol.
MAX_HEADER_BYTES = 32 * 1024
_UPLOAD_ROUTES = re.compile(r"/api/jobs|/files/uploads/[^/]+/source")
# Local mode's multipart part PUT: one part at most (video_converter.multipart checks its exact size).
_PART_ROUTE = re.compile(r"/files/uploads/[^/]+/source")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` as soon as the body passes its limit; the app's handlers answer 413."""

    def __init__(self, detail: str) -> None:
        # Close the connection after answering: otherwise the server keeps reading (and dropping) the
        # rest of the body, however long the client goes on sending.
        super().__init__(413, detail, headers={"Connection": "close"})


class RequestLimits:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int, max_headers: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.max_headers = max_headers

    def _body_limit(self, scope: Scope) -> tuple[int, str]:
        """The limit for this request's body and the sentence that refuses it."""
        content_type = _header(scope, b"content-type").lower()
        if (
            scope["method"] == "POST"
            and content_type.startswith("multipart/form-data")
            and _UPLOAD_ROUTES.fullmatch(scope["path"])
        ):
            sentence = f"The file is larger than the {human_bytes(self.max_upload_bytes)} limit."
            return self.max_upload_bytes + UPLOAD_SLACK_BYTES, sentence
        if scope["method"] == "PUT" and _PART_ROUTE.fullmatch(scope["path"]):
            return MAX_PART, f"A part is at most {human_bytes(MAX_PART)}."
        return self.max_body_bytes, f"The request body is larger than the {human_bytes(self.max_body_bytes)} limit."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if len(headers) > self.max_headers:
            await _refuse(send, 431, f"The request has more than {self.max_headers} headers.")
            return
        if sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
            await _refuse(send, 431, f"The request headers are larger than the {human_bytes(MAX_HEADER_BYTES)} limit.")
            return
        limit, sentence = self._body_limit(scope)
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, sentence)  # said so up front: not one byte is read
            return

        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(sentence)
            return message

        try:
            await self.app(scope, counted, send)
        except ClientDisconnect:
            # Nothing to answer and nothing to keep: the route had not stored anything yet.
            log.info("client went away during %s %s after %d bytes", scope["method"], scope["path"], received)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
