"""``unilabel-remote jobs | datasets | models`` page through a list: the footer says the range shown and the
option for the next page, --offset and --limit are checked against the API's bounds before any request, and
--all takes every page. No service: the lists are bodies made here (tests/service/test_remote_paging_stack.py
runs them against one)."""

from __future__ import annotations

from typing import Any

import pytest

from remote.cli import build_parser, main
from remote.listing import datasets_table, jobs_table, models_table
from remote.paging import every_item


def _body(n: int, total: int) -> dict[str, Any]:
    return {"items": [{"id": f"{i:032x}"} for i in range(n)], "total": total}


@pytest.mark.parametrize(
    ("shown", "total", "offset", "limit", "footer"),
    [
        (0, 0, 0, None, "no jobs"),
        (1, 1, 0, None, "1 job"),  # the whole list: said as before
        (12, 12, 0, None, "12 jobs"),
        (100, 130, 0, None, "jobs 1–100 of 130 (--offset 100 for older)"),  # was "the newest 100 of 130 jobs"
        (100, 250, 100, None, "jobs 101–200 of 250 (--offset 200 for older)"),
        (30, 130, 100, None, "jobs 101–130 of 130"),  # the oldest page: nothing older
        (1, 101, 100, None, "jobs 101–101 of 101"),
        (20, 130, 40, 20, "jobs 41–60 of 130 (--offset 60 --limit 20 for older)"),  # the same size next
        (100, 130, 0, 100, "jobs 1–100 of 130 (--offset 100 for older)"),  # the default limit, not repeated
        (2, 2, 0, 5, "2 jobs"),
        (0, 130, 500, None, "no jobs at --offset 500, of 130 (--offset 30 for the oldest)"),
        (0, 3, 7, 2, "no jobs at --offset 7, of 3 (--offset 1 --limit 2 for the oldest)"),
    ],
)
def test_the_footer_says_the_range_shown_and_how_to_see_older(
    shown: int, total: int, offset: int, limit: int | None, footer: str
) -> None:
    jobs = [
        {"id": f"{i:032x}", "state": "failed", "strategy": "mug", "seed": i, "dataset_id": "d" * 64}
        for i in range(shown)
    ]
    assert jobs_table({"items": jobs, "total": total}, offset, limit).splitlines()[-1] == footer


def test_each_list_names_its_items_in_the_footer() -> None:
    assert (
        datasets_table({"items": [], "total": 5}, 5)
        == "no datasets at --offset 5, of 5 (--offset 0 for the oldest)"
    )
    card = {"id": "m" * 32, "strategy": "mug", "seed": 1, "dataset_id": "d" * 64, "metrics": {}}
    assert models_table({"items": [card], "total": 4}, 2, 1).splitlines()[-1] == (
        "models 3–3 of 4 (--offset 3 --limit 1 for older)"
    )


@pytest.mark.parametrize("command", ["jobs", "datasets", "models"])
def test_offset_limit_and_all_parse(command: str) -> None:
    args = build_parser().parse_args([command, "--offset", "200", "--limit", "1000"])
    assert (args.offset, args.limit, args.all) == (200, 1000, False)
    args = build_parser().parse_args([command, "--all", "--offset", "0", "--json"])
    assert (args.offset, args.limit, args.all, args.json) == (0, None, True, True)
    args = build_parser().parse_args([command])
    assert (args.offset, args.limit, args.all) == (None, None, False)  # nothing asked: the API's default page


def test_jobs_state_goes_with_the_page_options() -> None:
    args = build_parser().parse_args(["jobs", "--state", "failed", "--offset", "2", "--limit", "2"])
    assert (args.state, args.offset, args.limit) == ("failed", 2, 2)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--limit", "0"], "argument --limit: 0 is out of range: give 1 to 1,000 (the API's largest page"),
        (["--limit", "1001"], "argument --limit: 1001 is out of range: give 1 to 1,000"),
        (["--limit", "-3"], "argument --limit: -3 is out of range"),
        (["--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
        (["--offset", "-1"], "argument --offset: -1 is out of range: give 0 to 1,000,000,000"),
        (["--offset", str(10**9 + 1)], "argument --offset: 1000000001 is out of range"),
        (["--offset", "1.5"], "argument --offset: '1.5' is not a whole number"),
        (["--all", "--limit", "5"], "argument --limit: not allowed with argument --all"),
    ],
)
@pytest.mark.parametrize("command", ["jobs", "datasets", "models"])
def test_a_bad_offset_or_limit_is_named_before_any_request(
    command: str, argv: list[str], error: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--url", "http://127.0.0.1:9", command, *argv])  # nothing listens there: no request is made
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"unilabel-remote {command}: error: {error}" in err, err


def test_all_pages_through_the_api_by_its_largest_page() -> None:
    """2,500 items in pages of 1,000 (the API's most): three requests, every item once, in order."""
    items = [{"id": f"{i:032x}"} for i in range(2500)]
    asked: list[tuple[int | None, int | None]] = []

    def fetch(limit: int | None, offset: int | None) -> dict[str, Any]:
        asked.append((limit, offset))
        return {"items": items[offset : offset + limit], "total": len(items)}

    assert every_item(fetch) == {"items": items, "total": 2500}
    assert asked == [(1000, 0), (1000, 1000), (1000, 2000)]
    asked.clear()
    assert every_item(fetch, 2400) == {"items": items[2400:], "total": 2500}  # --all --offset 2400
    assert asked == [(1000, 2400)]


def test_all_takes_an_item_once_when_a_newer_one_shifts_the_pages() -> None:
    """A job that comes between two requests goes first and pushes the first page's last item onto the
    second page; an admin's datasets hold one id under two keys, both listed."""
    pages = iter(
        [
            {"items": [{"id": "c"}, {"id": "b", "owner": "k1"}], "total": 3},
            {"items": [{"id": "b", "owner": "k1"}, {"id": "b", "owner": "k2"}, {"id": "a"}], "total": 5},
        ]
    )
    got = every_item(lambda limit, offset: next(pages))
    assert [(i["id"], i.get("owner")) for i in got["items"]] == [
        ("c", None),
        ("b", "k1"),
        ("b", "k2"),
        ("a", None),
    ]
    assert every_item(lambda limit, offset: _body(0, 0)) == {"items": [], "total": 0}
