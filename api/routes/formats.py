"""The output formats people can choose."""

from fastapi import APIRouter

from video_converter.presets import PRESETS
from video_converter.views import FormatView

router = APIRouter(prefix="/api/formats", tags=["formats"])


@router.get("")
def list_formats() -> list[FormatView]:
    return [FormatView.of(preset) for preset in PRESETS.values()]
