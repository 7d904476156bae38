"""The page at / in-process: served without a key, from this server only (no CDN, no other host), with a
strict content policy; its assets answer; the Host/Origin check still applies; the API behind it still needs
the key. What the page shows in a browser: tests/service/test_page_browser.py."""

from __future__ import annotations

import re

import pytest

from service.page import STATIC

NO_KEY = {"Authorization": ""}


def assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#]+)"', html)


def test_page_needs_no_key_and_loads_only_from_this_server(client) -> None:
    page = client.get("/", headers=NO_KEY)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-src blob:" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    html = page.text
    assets = [a for a in assets_of(html) if not a.startswith("data:")]
    assert set(assets) == {"/docs", "/static/page/page.css", "/static/page/page.js"}, assets
    for asset in assets:
        if asset.startswith("/static/"):
            r = client.get(asset, headers=NO_KEY)
            assert r.status_code == 200 and len(r.content) > 500, asset
    for name in ("index.html", "page.js", "page.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://|//cdn|@import", text), name  # nothing from another host
    js = client.get("/static/page/page.js", headers=NO_KEY)
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "Authorization: `Bearer ${state.key}`" in js.text and "sessionStorage" in js.text
    assert "innerHTML" not in js.text  # values from the API land as text only


def test_the_api_behind_the_page_still_needs_the_key(client) -> None:
    for path in ("/v1/jobs", "/v1/datasets", "/v1/models"):
        assert client.get(path, headers=NO_KEY).status_code == 401
    # the open prefix is the static files only: a path that climbs out of it reaches no API route (the
    # dots encoded, so that the client sends them as they are)
    for path in ("/static/%2e%2e/v1/jobs", "/static/page/%2e%2e/%2e%2e/v1/jobs", "/static/nothing"):
        r = client.get(path, headers=NO_KEY)
        assert r.status_code == 404 and "items" not in r.text, path
    assert client.post("/", headers=NO_KEY).status_code == 405


@pytest.mark.parametrize(
    "headers, field",
    [({"Host": "attacker.example"}, "header.host"), ({"Origin": "http://attacker.example"}, "header.origin")],
)
def test_page_and_assets_keep_the_host_check(client, headers: dict, field: str) -> None:
    for path in ("/", "/static/page/page.js", "/static/docs/swagger-ui.css"):
        r = client.get(path, headers={**NO_KEY, **headers})
        assert r.status_code == 403 and r.json()["error"]["field"] == field, path


def test_page_and_assets_are_named_routes_in_the_metrics(client) -> None:
    client.get("/", headers=NO_KEY)
    client.get("/static/page/page.js", headers=NO_KEY)
    client.get("/static/docs/swagger-ui.css", headers=NO_KEY)
    text = client.get("/metrics", headers=client.admin_headers).text
    for route in ("/", "/static/page", "/static/docs"):
        assert f'route="{route}",status="200"' in text, route
    assert 'route="unmatched",status="200"' not in text


def test_the_job_form_offers_every_strategy_and_preset() -> None:
    """The page's job form lists strategies and presets in its HTML: the library's, no more, no fewer."""
    from models.config import PRESETS
    from models.strategies import STRATEGIES

    html = (STATIC / "index.html").read_text()

    def options(select_id: str) -> list[str]:
        select = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
        assert select, select_id
        found = re.findall(r'<option( value="[^"]*")?>([^<]*)<', select[1])
        return [attr[len(' value="') : -1] if attr else text for attr, text in found]

    assert options("job-strategy") == list(STRATEGIES)
    assert options("job-preset") == ["", *PRESETS]  # "" (none): the strategy's defaults
