"""``unilabel-admin``: the operator's commands (needs only REDIS_URL).

    unilabel-admin keys create NAME [--admin] [--limit NAME=VALUE ...]   prints the new key (shown once)
    unilabel-admin keys list [--json]                                   names, ids, admin, created, revoked
    unilabel-admin keys revoke NAME|ID

Quotas a key may override: queued_jobs, concurrent_jobs, stored_bytes, uploads_per_minute,
predictions_per_minute (0 = unlimited; without one, the API's QUOTA_* settings apply).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from redis.exceptions import RedisError

from api_schemas.usage import QUOTAS
from models.cli_args import add_version_option
from models.interrupts import exit_status, signals_unwind
from service.keys import KeyProblem, KeyStore

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
REDIS_TIMEOUT_S = 10.0  # a Redis that does not answer in this time is an error, not a wait without end
# What an interrupt (Ctrl-C, SIGTERM, SIGHUP) leaves: a command that changes keys may have reached Redis.
INTERRUPTED = {
    "create": "the key may or may not have been created, and was not shown: `unilabel-admin keys list` tells "
    "(revoke it, then create the name again)",
    "list": "nothing was changed",
    "revoke": "the key may or may not have been revoked: `unilabel-admin keys list` tells",
}


def _limits(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise KeyProblem(f"--limit expects NAME=INTEGER with NAME one of {list(QUOTAS)}, got {item!r}")
        out[name.strip()] = int(value)
    return out


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else "-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unilabel-admin", description=__doc__.split("\n\n")[0])
    add_version_option(parser)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS), help="default: env REDIS_URL"
    )
    sub = parser.add_subparsers(dest="area", required=True, metavar="AREA", help="each has its own -h")
    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="each has its own -h"
    )
    p = keys.add_parser("create", help="create a key and print it (it is shown only once)")
    p.add_argument("name", help="who the key is for: letters, digits and . _ @ -, unique")
    p.add_argument("--admin", action="store_true", help="sees and may act on every key's resources")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE", help="a quota of its own")
    p.add_argument("--quiet", action="store_true", help="print the key only")
    p = keys.add_parser("list", help="list keys (never the keys themselves)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    keys.add_parser("revoke", help="revoke a key by name or id").add_argument(
        "name_or_id", help="the key's name or id (keys list shows both)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``unilabel-admin`` command. Ctrl-C, SIGTERM and SIGHUP end it with one line saying what the
    interrupt left, and the exit status 128 + the signal's number."""
    args = build_parser().parse_args(argv)
    with signals_unwind():
        try:
            return _run(args)
        except KeyboardInterrupt as exc:
            said = INTERRUPTED[args.command]
            print(f"unilabel-admin keys {args.command}: interrupted; {said}", file=sys.stderr)
            return exit_status(exc)


def _run(args: argparse.Namespace) -> int:
    store = KeyStore.from_url(args.redis_url, timeout_s=REDIS_TIMEOUT_S)
    try:
        if args.command == "create":
            key = store.create(args.name, admin=args.admin, limits=_limits(args.limit))
            if args.quiet:
                print(key)
            else:
                kind = "admin key" if args.admin else "key"
                print(f"{kind} {args.name!r} created; it is shown only this once:\n{key}")
                print(
                    "send it as `Authorization: Bearer <key>` (unilabel-remote --key, env UNILABEL_API_KEY)"
                )
        elif args.command == "list":
            keys = store.list()
            if args.json:
                print(json.dumps(keys, indent=2))
            for k in [] if args.json else keys:
                flags = ", ".join(
                    [*(["admin"] if k["admin"] else []), *(f"{n}={v}" for n, v in k["limits"].items())]
                )
                state = f"revoked {_when(k['revoked_at'])}" if k["revoked_at"] else "live"
                print(
                    f"{k['id']}  {k['name']:<24} created {_when(k['created_at'])}  {state}  {flags}".rstrip()
                )
        else:
            print(f"revoked key {store.revoke(args.name_or_id)}")
    except KeyProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"error: Redis at {args.redis_url.split('@')[-1]}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
