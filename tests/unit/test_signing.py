"""HMAC-signed, expiring URLs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from video_converter.signing import Signer

NOW = 1_700_000_000.0


def parts(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    return split.path, {k: v[0] for k, v in parse_qs(split.query).items()}


@pytest.fixture
def signer() -> Signer:
    return Signer("s3cret")


def test_round_trip(signer: Signer) -> None:
    url = signer.sign("/files/converted/a/b.mp4", 60, now=NOW, filename="b 720p.mp4")
    path, query = parts(url)
    assert path == "/files/converted/a/b.mp4"
    assert query["expires"] == str(int(NOW + 60))
    assert query["filename"] == "b 720p.mp4"
    assert signer.verify(path, query["expires"], query["signature"], now=NOW, filename=query["filename"])


def test_without_params(signer: Signer) -> None:
    path, query = parts(signer.sign("/x", 10, now=NOW))
    assert set(query) == {"expires", "signature"}
    assert signer.verify(path, query["expires"], query["signature"], now=NOW)


def test_tampering_is_rejected(signer: Signer) -> None:
    path, q = parts(signer.sign("/files/uploads/u/source", 60, now=NOW, max_bytes="1000"))
    e, s = q["expires"], q["signature"]
    assert signer.verify(path, e, s, now=NOW, max_bytes="1000")
    assert not signer.verify("/files/uploads/v/source", e, s, now=NOW, max_bytes="1000")
    assert not signer.verify(path, e, s, now=NOW, max_bytes="1000000")
    assert not signer.verify(path, e, s, now=NOW)  # dropped param
    assert not signer.verify(path, e, s, now=NOW, max_bytes="1000", extra="1")  # added param
    assert not signer.verify(path, str(int(e) + 3600), s, now=NOW, max_bytes="1000")  # extended expiry
    assert not signer.verify(path, e, s[:-1] + ("0" if s[-1] != "0" else "1"), now=NOW, max_bytes="1000")
    assert not signer.verify(path, e, "", now=NOW, max_bytes="1000")


def test_other_secret_rejected(signer: Signer) -> None:
    path, q = parts(signer.sign("/x", 60, now=NOW))
    assert not Signer("other").verify(path, q["expires"], q["signature"], now=NOW)


def test_expiry(signer: Signer) -> None:
    path, q = parts(signer.sign("/x", 60, now=NOW))
    assert signer.verify(path, q["expires"], q["signature"], now=NOW + 60)  # still valid at the second
    assert not signer.verify(path, q["expires"], q["signature"], now=NOW + 61)
    path, q = parts(signer.sign("/x", -1))  # real clock
    assert not signer.verify(path, q["expires"], q["signature"])


@pytest.mark.parametrize("expires", ["", "abc", "1.5e9", "1700000060.0", "NaN", "0x10"])
def test_non_numeric_expires_rejected(signer: Signer, expires: str) -> None:
    path, q = parts(signer.sign("/x", 60, now=NOW))
    assert not signer.verify(path, expires, q["signature"], now=NOW)


def test_secret_required() -> None:
    with pytest.raises(ValueError, match="secret"):
        Signer("")
