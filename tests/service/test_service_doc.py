"""docs/service.md against the app and the settings: every route the app serves is a row of its API table and
every row a route; every setting of worker/settings.py is a row of its configuration table, with the default
the code has; the error shape is the one it shows. No Redis needed: the app is only built, never asked."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute
from starlette.routing import Route

from api_schemas.errors import ErrorDetail, ErrorInfo
from service.app import create_app
from worker.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"
# documented in the configuration table but no field of Settings: read from the environment by itself
NOT_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR": Path(__file__).resolve().parents[2] / "service" / "serve.py"}


def _section(heading: str, text: str | None = None) -> str:
    text = DOC.read_text() if text is None else text
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _table_rows(section: str) -> list[list[str]]:
    """The cells of each row of the first table in ``section`` (header and rule left out)."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    # a cell may hold an escaped bar (`csv\|json`): split on the others only
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def _served_routes() -> set[tuple[str, str]]:
    """(METHOD, path with every {param} as {}) of every route of the app, HEAD and the static mounts aside."""

    def walk(routes: list) -> set[tuple[str, str]]:
        found = set()
        for route in routes:
            if isinstance(route, (APIRoute, Route)):
                path = re.sub(r"\{[^}]+\}", "{}", route.path)
                found |= {(m, path) for m in route.methods or () if m != "HEAD"}
            elif hasattr(route, "original_router"):  # an included router (fastapi >= 0.120)
                found |= walk(route.original_router.routes)
        return found

    return walk(create_app().routes)


def _documented_routes() -> set[tuple[str, str]]:
    documented = set()
    for row in _table_rows(_section("API")):
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", row[0]):
            documented.add((method, re.sub(r"\{[^}]+\}", "{}", path)))
    return documented


def test_every_route_is_in_the_api_table_and_every_row_is_a_route() -> None:
    served, documented = _served_routes(), _documented_routes()
    assert ("POST", "/v1/models/{}/predict") in served and ("GET", "/") in served  # the walk found them
    assert served - documented == set(), "served but not in docs/service.md's API table"
    assert documented - served == set(), "in docs/service.md's API table but not served"


UNITS = {"GiB": 1024**3, "MiB": 1024**2, "h": 3600, "min": 60, "day": 86400}


def _value(text: str) -> float | str | bool | None:
    """A default as the table writes it: `text`, off, 600,000, 2 GiB, 6 h 5 min, 1 day; None when it is
    words (= `REDIS_URL`, hard limit + 1 h) that this test does not read."""
    text = text.strip()
    if text == "off":
        return False
    if re.fullmatch(r"`[^`]*`", text):
        return text.strip("`")
    if re.fullmatch(r"[\d,]+(\.\d+)?", text):
        return float(text.replace(",", ""))
    parts = re.findall(r"([\d.]+) ([A-Za-z]+)", text)
    if parts and " ".join(f"{n} {u}" for n, u in parts) == text and all(u in UNITS for _, u in parts):
        return sum(float(n) * UNITS[u] for n, u in parts)
    return None


def _documented_defaults(text: str | None = None) -> dict[str, float | str | bool | None]:
    """Each variable of the configuration table and its documented default (None: not read here)."""
    defaults: dict[str, float | str | bool | None] = {}
    for row in _table_rows(_section("Configuration", text)):
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])
        cell = row[1]
        each = cell.endswith(" each")  # "32 MiB each": one default for every variable of the row
        values = [cell.removesuffix(" each")] * len(names) if each else cell.split(", ")
        if len(values) != len(names):  # "1 day" for two TTLs
            values = [cell] * len(names)
        defaults |= {name: _value(value) for name, value in zip(names, values, strict=True)}
    return defaults


def test_every_setting_is_in_the_configuration_table_and_every_row_is_read() -> None:
    documented = set(_documented_defaults())
    settings = {name.upper() for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from docs/service.md's configuration table"
    assert documented - settings - set(NOT_SETTINGS) == set(), "in the table, but no setting"
    for name, reader in NOT_SETTINGS.items():
        assert name in reader.read_text(), f"{name}: documented, and {reader.name} should read it"


def _wrong_defaults(text: str | None = None) -> tuple[list[str], int]:
    """The settings whose documented default is not the code's, and how many defaults were compared."""
    documented, wrong, compared = _documented_defaults(text), [], 0
    for field_name, field in Settings.model_fields.items():
        doc, actual = documented[field_name.upper()], field.default
        if doc is None:
            continue
        compared += 1
        if isinstance(doc, bool):
            same = actual in (False, None)
        elif isinstance(doc, float):
            same = isinstance(actual, (int, float)) and float(actual) == doc
        else:
            same = str(actual) == doc
        if not same:
            wrong.append(f"{field_name.upper()}: documented {doc!r}, the code's default {actual!r}")
    return wrong, compared


def test_the_documented_defaults_are_the_settings_defaults() -> None:
    wrong, compared = _wrong_defaults()
    assert not wrong
    assert compared >= 35, compared  # the table's defaults were read, not skipped


def test_a_wrong_documented_default_is_found() -> None:
    text = DOC.read_text()
    row = "| `MODEL_CACHE_SIZE` | 4 |"
    assert row in text
    wrong, _ = _wrong_defaults(text.replace(row, "| `MODEL_CACHE_SIZE` | 5 |"))
    assert wrong == ["MODEL_CACHE_SIZE: documented 5.0, the code's default 4"]


def test_the_error_shape_is_the_documented_one() -> None:
    text = DOC.read_text()
    shape = re.search(r'```json\n(\{"error": \{.*?\}\})\n```', text, flags=re.S)
    assert shape, "docs/service.md shows the error shape"
    keys = re.findall(r'"(\w+)":', shape.group(1))
    assert set(keys) == {"error", *ErrorInfo.model_fields, *ErrorDetail.model_fields}
    assert list(ErrorInfo.model_fields) == ["code", "message", "field", "details"]
    assert list(ErrorDetail.model_fields) == ["field", "problem"]
