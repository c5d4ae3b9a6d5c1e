"""The output formats people can choose."""

from fastapi import APIRouter, Depends

from api.deps import get_owner
from video_converter.presets import PRESETS
from video_converter.views import FormatView

router = APIRouter(prefix="/api/formats", tags=["formats"], dependencies=[Depends(get_owner)])  # keys mode: a key


@router.get("")
def list_formats() -> list[FormatView]:
    return [FormatView.of(preset) for preset in PRESETS.values()]
