"""Security headers on every response. Job ids are capabilities: keep them out of Referer headers.

The Content-Security-Policy admits this site's own files only (no inline script or style: the pages
keep theirs in /static), plus the storage origins the browser must reach in AWS mode: the upload
bucket for the direct upload (connect-src) and the converted bucket for previews (img-src,
media-src). Those origins are taken from URLs the stores actually sign, so they follow the region,
addressing style and endpoint boto3 uses, instead of a blanket ``https:``.

/docs (Swagger UI) and /redoc (ReDoc) load their files from this app (api.routes.docs), so they need no
CDN. Swagger UI runs under a policy as strict as the pages' (its start-up script is a file, not inline),
with data: images for its icons. ReDoc injects its styles as <style> elements at run time (styled-
components) and parses the schema in a blob: worker, so /redoc alone admits inline style (never inline
script) and blob: workers; those pages show no user data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# A year; no includeSubDomains or preload: the operator's other hosts are not ours to commit.
HSTS = "max-age=31536000"


def _policy(directives: dict[str, Iterable[str]]) -> str:
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def content_security_policy(upload_origins: Iterable[str] = (), media_origins: Iterable[str] = ()) -> str:
    uploads, media = sorted(set(upload_origins)), sorted(set(media_origins))
    return _policy(
        {
            "default-src": ["'self'"],
            "script-src": ["'self'"],
            "style-src": ["'self'"],
            "img-src": ["'self'", *media],
            # blob: lets the page read the size of the video a person picked, locally, before uploading it
            "media-src": ["'self'", "blob:", *media],
            # the converted bucket too: the stream player (hls.js) fetches the media files itself
            "connect-src": ["'self'", *uploads, *media],
            "object-src": ["'none'"],
            "frame-ancestors": ["'none'"],
            "base-uri": ["'none'"],
            "form-action": ["'self'"],
        }
    )


DOCS_POLICY = _policy(
    {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
)
REDOC_POLICY = _policy(
    {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "worker-src": ["blob:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
)


def signed_origins(store: Any, kind: str) -> list[str]:
    """The origin of the URLs ``store`` hands to browsers (none when they are on this site)."""
    try:
        if kind == "upload":
            url = store.upload_form("csp/origin", 1, 60)[0]
        else:
            url = store.download_url("csp/origin", "origin.mp4", "video/mp4", 60)
    except Exception:  # no signer or no credentials yet: nothing to admit
        return []
    parts = urlsplit(url)
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme in ("http", "https") and parts.netloc else []


def _is_https(scope: Scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    # Behind a TLS-terminating proxy or load balancer. A client forging it over plain HTTP gains
    # nothing: browsers ignore HSTS received over HTTP.
    return any(name == b"x-forwarded-proto" and value.strip().lower() == b"https" for name, value in scope["headers"])


class SecurityHeaders:
    """Pure ASGI middleware (it does not buffer bodies, so streamed downloads stay streamed)."""

    def __init__(self, app: ASGIApp, csp: str | None = None) -> None:
        self.app = app
        self.csp = csp or content_security_policy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = {"/docs": DOCS_POLICY, "/redoc": REDOC_POLICY}.get(path, self.csp)
        https = _is_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", csp)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
