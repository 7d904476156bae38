"""/docs and /redoc work offline: their HTML names no other host (FastAPI's own pages load Swagger UI and
ReDoc from a CDN, a favicon from FastAPI's site and fonts from Google), and every asset they name is served
by the app itself, from the fastapi-offline package, without a key. That Swagger UI really renders from
these assets in a browser: tests/service/test_page_browser.py."""

from __future__ import annotations

import re

import pytest

from service.docs import ASSETS

NO_KEY = {"Authorization": ""}
EXTERNAL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_docs_pages_name_no_other_host(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not EXTERNAL.search(r.text), EXTERNAL.search(r.text)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_assets_are_served_here_without_a_key(client, path: str) -> None:
    html = client.get(path).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/docs/") for a in assets), assets
    for asset in assets:
        r = client.get(asset, headers=NO_KEY)
        assert r.status_code == 200, asset
        assert r.content == (ASSETS / asset.rsplit("/", 1)[1]).read_bytes()
    assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_is_version_5_and_asks_no_validator(client) -> None:
    """Swagger UI 4 cannot read OpenAPI 3.1 (what FastAPI writes); its validator badge calls
    validator.swagger.io with the document's URL."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/static/docs/swagger-ui-bundle.js", headers=NO_KEY).text
    assert re.search(r'"5\.\d+\.\d+"', bundle)
    assert '"validatorUrl": null' in client.get("/docs").text


def test_docs_pages_still_need_a_key_without_public_docs(client) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path, headers=NO_KEY).status_code == 401, path


def test_docs_assets_are_a_named_route_in_the_metrics(client) -> None:
    assert client.get("/static/docs/swagger-ui.css", headers=NO_KEY).status_code == 200
    text = client.get("/metrics", headers=client.admin_headers).text
    assert 'route="/static/docs",status="200"' in text and 'route="unmatched",status="200"' not in text
