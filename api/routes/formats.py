from typing import Any

from fastapi import APIRouter

from video_converter.presets import PRESETS

router = APIRouter(prefix="/api/formats", tags=["formats"])


@router.get("")
def list_formats() -> list[dict[str, Any]]:
    return [preset.public() for preset in PRESETS.values()]
