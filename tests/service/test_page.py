"""The page at / in-process: served without a key, from this server only (no CDN, no other host), with a
strict content policy; its assets answer; the Host/Origin check still applies; the API behind it still needs
the key. What the page shows in a browser: tests/service/test_page_browser.py."""

from __future__ import annotations

import mimetypes
import re

import pytest

from service.page import STATIC
from tests.service.conftest import new_client

NO_KEY = {"Authorization": ""}
# the page's script: page.js, an ES module, and the modules it imports
MODULES = {"page.js", "dom.js", "state.js", "api.js", "report.js", "lists.js", "forms.js"}


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
    assert set(assets) == {"/docs", "/static/page/page.css", *(f"/static/page/{m}" for m in MODULES)}, assets
    for asset in assets:
        if asset.startswith("/static/"):
            r = client.get(asset, headers=NO_KEY)
            assert r.status_code == 200 and len(r.content) > 500, asset
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://|//cdn|@import", text), path.name  # nothing from another host
    scripts = {name: client.get(f"/static/page/{name}", headers=NO_KEY) for name in MODULES}
    for name, js in scripts.items():
        # a module served as anything but JavaScript is refused by the browser, and the page with it
        assert js.headers["content-type"].startswith(("text/javascript", "application/javascript")), name
        assert "innerHTML" not in js.text, name  # values from the API land as text only
    assert "Authorization: `Bearer ${state.key}`" in scripts["api.js"].text
    assert "sessionStorage" in scripts["state.js"].text


def test_the_page_is_one_module_that_imports_the_others(client) -> None:
    """index.html loads page.js as a module, whose imports (and theirs) are the page's other modules, each
    named in the HTML to be fetched at once: none left out of either, none from elsewhere."""
    html = client.get("/", headers=NO_KEY).text
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="/static/page/page.js">']
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/page/([^"]+)">', html))
    assert {p.name for p in STATIC.glob("*.js")} == MODULES == preloaded | {"page.js"}
    reached, todo = set(), ["page.js"]
    while todo:
        name = todo.pop()
        reached.add(name)
        text = client.get(f"/static/page/{name}", headers=NO_KEY).text
        imports = re.findall(r'^import [^;]* from "([^"]+)";$', text, re.M)
        assert len(imports) == len(re.findall(r"\bimport\b", text)), name  # none missed: no import()
        for spec in imports:
            assert spec.startswith("./") and spec[2:] in MODULES, (name, spec)
            if spec[2:] not in reached:
                todo.append(spec[2:])
    assert reached == MODULES


def test_the_pages_assets_are_checked_again_at_each_load(client) -> None:
    """Without Cache-Control a browser keeps a file with a Last-Modified for a tenth of its age without asking
    (heuristic freshness), each file for its own time: after an upgrade a page could run a new lists.js
    with the old dom.js it imports, whose missing export stops every module (a SyntaxError) and leaves the
    page at "Loading…". Each asset is asked for again at each load, as the page is (no-cache: a 304 when
    unchanged)."""
    for name in [*sorted(MODULES), "page.css"]:
        asset = client.get(f"/static/page/{name}", headers=NO_KEY)
        assert asset.headers.get("cache-control") == "no-cache", (name, dict(asset.headers))
        again = client.get(f"/static/page/{name}", headers={**NO_KEY, "If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304, name

def test_modules_are_served_as_javascript_whatever_the_hosts_types_say(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The type of a .js file comes from the host's tables (/etc/mime.types, Windows' registry), which may
    say text/plain: the app says JavaScript, as a browser runs a module of no other type."""
    mimetypes.init()
    monkeypatch.setitem(mimetypes._db.types_map[True], ".js", "text/plain")
    assert mimetypes.guess_type("page.js")[0] == "text/plain"
    with new_client(settings) as client:
        js = client.get("/static/page/lists.js", headers=NO_KEY)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript"), js.headers


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
