"""Safe stems and the key layout."""

from __future__ import annotations

import re
import unicodedata

import pytest

from video_converter import keys
from video_converter.storage import validate_key

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")

NASTY = [
    "../../etc/passwd",
    "C:\\x\\evil.mp4",
    "Café déjà vu.mov",
    "",
    ".",
    "...",
    "....mp4",
    ".hidden",
    "a" * 300 + ".mp4",
    "b" * 79 + ".c" + "d" * 50,
    "quote\"d'name.mp4",
    "new\nline\r.mp4",
    "semi;colon; rm -rf /.mp4",
    "日本語.mp4",
    "-leading-dash.mp4",
    "  spaced  out  .mp4",
    "null\x00byte.mp4",
    "%2e%2e%2fetc.mp4",
    "emoji 🎬 clip.mkv",
    "/abs/path/",
]


@pytest.mark.parametrize("name", NASTY)
def test_safe_stem_is_always_safe(name: str) -> None:
    stem = keys.safe_stem(name)
    assert SAFE.match(stem), stem
    assert not stem.startswith((".", "-", "_"))
    assert not stem.endswith((".", "-", "_"))
    assert 1 <= len(stem) <= keys.MAX_STEM == 80
    validate_key(keys.output_key("a", stem, "720p", "mp4"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\evil.mp4", "evil"),
        ("Café déjà vu.mov", "Cafe_deja_vu"),
        ("", "video"),
        ("...", "video"),
        ("日本語.mp4", "video"),
        (".hidden", "hidden"),
        ("holiday.final.mp4", "holiday.final"),
        ("my clip (1).mp4", "my_clip_1"),
        ('x"y;\nz.mp4', "x_y_z"),
        ("plain", "plain"),
    ],
)
def test_safe_stem_values(name: str, expected: str) -> None:
    assert keys.safe_stem(name) == expected


def test_safe_stem_truncates_long_names() -> None:
    assert keys.safe_stem("a" * 300 + ".mp4") == "a" * 80
    # truncation never leaves a trailing separator
    assert keys.safe_stem("a" * 79 + "_" + "b" * 10 + ".mp4") == "a" * 79


def test_key_layout() -> None:
    job = "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11"
    assert keys.source_key(job) == f"{job}/source"
    assert keys.job_key(job) == f"{job}/job.json"
    assert keys.status_key(job, "720p") == f"{job}/status/720p.json"
    assert keys.output_filename("clip", "720p", "mp4") == "clip_720p.mp4"
    assert keys.output_key(job, "clip", "thumbnail", "jpg") == f"{job}/clip_thumbnail.jpg"
    for key in (keys.source_key(job), keys.job_key(job), keys.status_key(job, "mp3")):
        assert validate_key(key) == key


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("видео.mp4", "видео"),
        ("我的视频.mov", "我的视频"),
        ("Отпуск 2024.mp4", "Отпуск_2024"),
        ('Ελληνικά: "τεστ".mkv', "Ελληνικά_τεστ"),
        ("../../etc/видео.mp4", "видео"),
        ("Café déjà vu.mov", "Cafe_deja_vu"),  # Latin letters transliterate: same as safe_stem
        ("My Clip (1).mp4", "My_Clip_1"),
        ("видео\r\nContent-Type: x.mp4", "видео_Content-Type_x"),
    ],
)
def test_download_stem_keeps_non_latin_scripts_and_nothing_unsafe(filename: str, expected: str) -> None:
    stem = keys.download_stem(filename)
    assert stem == expected
    assert not re.search(r'[\x00-\x1f\x7f/\\:*?"<>|;%\s]', stem)


def test_download_stem_is_never_empty() -> None:
    assert keys.download_stem("„“.mp4") == keys.safe_stem("„“.mp4") == "video"


BIDI_AND_INVISIBLE = [
    "\u202a",  # left-to-right embedding
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",  # right-to-left override: "视频\u202e4pm.exe" displays as "视频exe.mp4"
    "\u2066",  # isolates
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",  # marks
    "\u200f",
    "\u061c",  # Arabic letter mark
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
]


@pytest.mark.parametrize("char", BIDI_AND_INVISIBLE)
def test_download_names_drop_bidi_controls_and_invisible_characters(char: str) -> None:
    for filename in (f"视频{char}gpj.exe.mp4", f"我的{char}视频.mov", f"holiday{char}cod.exe.mp4"):
        stem = keys.download_stem(filename)
        assert char not in stem, (filename, stem)
        assert all(not unicodedata.category(c).startswith("C") for c in stem), stem
    assert keys.download_stem(f"视频{char}gpj.exe.mp4") == "视频gpj.exe"
    assert keys.download_stem(f"{char}{char}.mp4") == "video"  # nothing visible left


def test_right_to_left_override_cannot_fake_an_extension_in_the_download_name() -> None:
    # With the override, "报告\u202efdp.exe_720p.mp4" would display as "报告4pm.p027_exe.pdf".
    name = keys.output_filename(keys.download_stem("报告\u202efdp.exe"), "720p", "mp4")
    assert name == "报告fdp_720p.mp4"


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("отпуск 2026_720p.mp4", "otpusk 2026_720p.mp4"),
        ("我的视频_720p.mp4", "WoDeShiPin_720p.mp4"),
        ('a "quoted"\\name;100%.mp4', "a _quoted__name_100_.mp4"),
        ("\u202egnp.exe_720p.mp4", "gnp.exe_720p.mp4"),  # a bidi override is dropped, not kept
        ("🎬", "_clapper_"),
    ],
)
def test_ascii_filename_transliterates(name: str, fallback: str) -> None:
    assert keys.ascii_filename(name) == fallback


def test_content_disposition_has_both_names() -> None:
    value = keys.content_disposition("отпуск_720p.mp4")
    assert value == (
        "attachment; filename=\"otpusk_720p.mp4\"; filename*=UTF-8''%D0%BE%D1%82%D0%BF%D1%83%D1%81%D0%BA_720p.mp4"
    )


def test_content_disposition_keeps_unicode_in_filename_star() -> None:
    value = keys.content_disposition('vidéo "1"_480p.mp4')
    assert value == "attachment; filename=\"video _1__480p.mp4\"; filename*=UTF-8''vid%C3%A9o%20%221%22_480p.mp4"


def test_content_disposition_keeps_a_non_latin_name_for_browsers_with_an_ascii_fallback() -> None:
    value = keys.content_disposition("Отпуск_2024_720p.mp4")
    assert value.startswith('attachment; filename="Otpusk_2024_720p.mp4"; ')  # transliterated (anyascii)
    assert value.endswith("filename*=UTF-8''%D0%9E%D1%82%D0%BF%D1%83%D1%81%D0%BA_2024_720p.mp4")
