"""The page at ``/``: the caller's datasets, jobs (live state and progress) and models, with their reports
and label and model downloads, and forms to upload a dataset and start a job. Plain HTML, CSS and a few
vanilla JavaScript modules from service/static/, nothing from another host.

The page itself and its assets need no API key: they are the same public files for everyone and hold no
data. The key stays in the browser: the page reads it from the address's fragment (``/#key=ulk_...``, which a
browser never sends to a server) or a form, keeps it in the tab's sessionStorage, takes it out of the address
bar, and sends it as ``Authorization: Bearer`` with each call of the JSON API (fetch). No cookie is involved,
so another site cannot make a browser call the API with the caller's rights (no CSRF), and the Host/Origin
check (service/guard.py) applies to the page as to everything else.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
ASSETS_URL = "/static/page"
# Scripts and styles from this server only; reports are shown from blob: URLs (fetched with the key) in a
# frame that inherits this policy, so their inline style and data: images are allowed, scripts are not.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "frame-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class Assets(StaticFiles):
    """The page's modules and style, each checked again at each load (``no-cache``: a 304 when unchanged).
    Without Cache-Control a browser keeps a file with a Last-Modified for a tenth of its age without asking,
    each file for its own time: after an upgrade a new module could import from an old one kept, and one
    missing export stops every module of the page."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = HEADERS["Cache-Control"]
        return response


def install(app: FastAPI) -> None:
    """``GET /`` and its assets under /static/page/."""
    # StaticFiles types a file by the host's tables (/etc/mime.types, Windows' registry), which may call .js
    # text/plain; a browser runs a module script (page.js and its imports) only when it is typed JavaScript
    mimetypes.add_type("text/javascript", ".js")
    app.mount(ASSETS_URL, Assets(directory=STATIC), name="page-assets")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)
