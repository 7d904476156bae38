"""``--offset``, ``--limit`` and ``--all`` of ``unilabel-remote jobs | datasets | models``.

The API answers a list a page at a time, newest first (``?limit=&offset=``, 100 by default); without these
options the client showed the newest 100 and said how many more there were, with no way to reach them. The
bounds are the API's own (api_schemas/paging.py), checked before any request so that a bad value is argparse's
error naming the option, not an HTTP 422 naming a query parameter the user never typed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from api_schemas.paging import OFFSET_MAX, PAGE_DEFAULT, PAGE_MAX

Fetch = Callable[[int | None, int | None], dict[str, Any]]  # (limit, offset) -> the API's {items, total}


def _whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse ``type``: an int from ``low`` to ``high``; argparse puts the option's name before the
    message (``argument --limit: ...``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {low} to {high:,} ({what})")
        return value

    return parse


page_limit = _whole_number(1, PAGE_MAX, "the API's largest page; --all takes every item")
page_offset = _whole_number(0, OFFSET_MAX, "how many of the newest to skip")


def add_page_options(parser: argparse.ArgumentParser, noun: str) -> None:
    """``--offset N``, ``--limit N`` and ``--all`` (not with ``--limit``: it asks for pages of its own)."""
    parser.add_argument(
        "--offset",
        type=page_offset,
        metavar="N",
        help=f"skip the newest N {noun} (default 0): the list's footer names the offset of the next page",
    )
    size = parser.add_mutually_exclusive_group()
    most = f"show at most N (default {PAGE_DEFAULT}, at most {PAGE_MAX})"
    size.add_argument("--limit", type=page_limit, metavar="N", help=most)
    size.add_argument(
        "--all",
        action="store_true",
        help=f"every one (from --offset on), asking the API for {PAGE_MAX} at a time",
    )


def fetch_list(fetch: Fetch, args: argparse.Namespace) -> dict[str, Any]:
    """The page ``args`` asks for, or with ``--all`` every item from ``--offset`` on as one {items, total}."""
    return every_item(fetch, args.offset or 0) if args.all else fetch(args.limit, args.offset)


def every_item(fetch: Fetch, offset: int = 0) -> dict[str, Any]:
    """Every item from ``offset`` on, the API's largest page at a time, in the API's order (newest first).

    The pages are not a snapshot: an item that comes meanwhile goes first and shifts the rest one further,
    so the next page starts with an item already taken; it is taken once (by id, and by owner: an admin key
    sees two keys' uploads of the same files under one id). ``total`` is the last page's."""
    items: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    while True:
        body = fetch(PAGE_MAX, offset)
        total = body["total"]
        for item in body["items"]:
            if (key := (item["id"], item.get("owner"))) not in seen:
                seen.add(key)
                items.append(item)
        offset += len(body["items"])
        if not body["items"] or offset >= total:  # an empty page: items deleted meanwhile ended the list
            return {"items": items, "total": total}
