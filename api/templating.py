"""The Jinja templates of the pages (the app's own, the docs', the HTML 404), loaded once."""

from pathlib import Path

from fastapi.templating import Jinja2Templates

templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
