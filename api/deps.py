"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from video_converter.config import Settings
from video_converter.jobs import Converter


def get_converter(request: Request) -> Converter:
    return request.app.state.converter


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


ConverterDep = Annotated[Converter, Depends(get_converter)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
