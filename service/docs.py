"""/docs (Swagger UI) and /redoc (ReDoc) without a network: FastAPI's self-hosting recipe, with the assets
from the fastapi-offline package (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc 2), served under
/static/docs/. FastAPI's own pages load them from a CDN, so without internet they stayed blank.

Nothing on these pages names another host: no favicon from FastAPI's site, no Google Fonts for ReDoc, and
Swagger UI's validator badge (which asks validator.swagger.io about the document) is off. The assets need no
API key (they are the same public files for everyone); the pages and /openapi.json need one unless
PUBLIC_DOCS is set (service/guard.py).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/static/docs"
ASSETS = Path(str(files("fastapi_offline") / "static"))
DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL = "/docs", "/redoc", "/docs/oauth2-redirect"
ASSET_NAMES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def install(app: FastAPI) -> None:
    """The docs' routes and assets on an app made with ``docs_url=None, redoc_url=None``."""
    missing = [name for name in ASSET_NAMES if not (ASSETS / name).is_file()]
    if missing:  # a fastapi-offline that moved its files: say so at start-up, not as a blank page
        raise RuntimeError(f"fastapi-offline ships no {', '.join(missing)} in {ASSETS}")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    title = app.title

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
