"""API keys: created, listed and revoked by ``unilabel-admin`` (service/admin.py), checked on every request.

A key reads ``ulk_<id>_<secret>``: the id (16 hex digits) names the key's record and owns what the key creates
(datasets, jobs, models); the secret (32 random bytes) is never stored. Redis keeps, under ``unilabel:``::

    key:<id>        hash: name, salt, hash = sha256(salt + secret), admin, created_at, revoked_at, limits
    keys            set of key ids
    keyname:<name>  the id of the live key of that name

The secret carries 256 bits of entropy, so one salted SHA-256 is enough: there is nothing to brute-force,
and a copy of Redis gives no usable key. Only REDIS_URL is needed (no server secret to distribute).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from api_schemas.usage import QUOTAS

PREFIX = "unilabel:"
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
TOKEN = re.compile(r"^ulk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class KeyProblem(ValueError):
    """A key that cannot be created or revoked as asked (the message says why)."""


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's id (the owner of what it creates), name, admin flag and own limits."""

    key_id: str
    name: str
    admin: bool = False
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.key_id

    def may_see(self, owner: str | None) -> bool:
        """An admin key sees everything; any other key only what it owns."""
        return self.admin or (owner is not None and owner == self.key_id)


def digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = TOKEN.match(token)
    return (match[1], match[2]) if match else None


def verify(record: dict[str, str], secret: str) -> Caller | None:
    """The caller a stored key record stands for, if ``secret`` is its secret and it is not revoked."""
    if not record or record.get("revoked_at") or not record.get("salt"):
        return None
    if not hmac.compare_digest(digest(record["salt"], secret), record.get("hash", "")):
        return None
    return holder(record)


def holder(record: dict[str, str]) -> Caller | None:
    """Whom a stored key record stands for, revoked or not (an admin's view of another key), or None."""
    if not record.get("id"):
        return None
    limits = json.loads(record["limits"]) if record.get("limits") else {}
    return Caller(record["id"], record["name"], record.get("admin") == "1", limits)


# KEYS: the name's key, the record's, the set of keys; ARGV: the key's id, then the record's fields, values.
CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""


def key_name(key_id: str) -> str:
    return f"{PREFIX}key:{key_id}"


class KeyStore:
    """Keys in Redis, for the admin CLI and the tests (the API reads records through ``key_name``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._create = client.register_script(CREATE)

    @classmethod
    def from_url(cls, url: str, timeout_s: float | None = None) -> KeyStore:
        """A store over ``url``; with ``timeout_s``, a call that Redis does not answer in that time raises a
        RedisError rather than waiting for ever (unilabel-admin, run by a person against a Redis that may be
        the wrong address)."""
        return cls(
            redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        )

    def create(self, name: str, admin: bool = False, limits: dict[str, int] | None = None) -> str:
        """A new key named ``name``; returns the key itself (shown once, never stored)."""
        if not NAME.match(name):
            raise KeyProblem(f"key name {name!r}: letters, digits and . _ @ - only, at most 64 characters")
        unknown = set(limits or {}) - set(QUOTAS)
        if unknown:
            raise KeyProblem(f"unknown limit(s) {sorted(unknown)}; one of {list(QUOTAS)}")
        key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
        record = {
            "id": key_id,
            "name": name,
            "salt": salt,
            "hash": digest(salt, secret),
            "admin": "1" if admin else "0",
            "created_at": repr(time.time()),
            "revoked_at": "",
            "limits": json.dumps(limits or {}, sort_keys=True),
        }
        # The name, the record and the list's entry in one script: cut short anywhere (a Redis that stops
        # answering, Ctrl-C), it made all three or none. A name taken without the other two would stand for a
        # key that `keys list` does not show and `keys revoke` cannot find, so the name could not be freed.
        fields = [part for pair in record.items() for part in pair]
        made = self._create(
            keys=[f"{PREFIX}keyname:{name}", key_name(key_id), f"{PREFIX}keys"], args=[key_id, *fields]
        )
        if not made:
            raise KeyProblem(f"a key named {name!r} exists; revoke it first or choose another name")
        return f"ulk_{key_id}_{secret}"

    def list(self) -> list[dict[str, Any]]:
        """Every key's record without its salt and hash, oldest first."""
        pipe = self.r.pipeline(transaction=False)
        for key_id in sorted(self.r.smembers(f"{PREFIX}keys")):
            pipe.hgetall(key_name(key_id))
        out = [
            {
                "id": rec["id"],
                "name": rec["name"],
                "admin": rec.get("admin") == "1",
                "created_at": float(rec["created_at"]),
                "revoked_at": float(rec["revoked_at"]) if rec.get("revoked_at") else None,
                "limits": json.loads(rec.get("limits") or "{}"),
            }
            for rec in pipe.execute()
            if rec
        ]
        return sorted(out, key=lambda r: r["created_at"])

    def revoke(self, name_or_id: str) -> str:
        """Revoke the live key of that name, or the key of that id; returns its id."""
        key_id = self.r.get(f"{PREFIX}keyname:{name_or_id}") or name_or_id
        rec = self.r.hgetall(key_name(key_id)) if KEY_ID.match(key_id) else {}
        if not rec or rec.get("revoked_at"):
            raise KeyProblem(f"no live key named or with id {name_or_id!r}")
        pipe = self.r.pipeline()
        pipe.hset(key_name(key_id), "revoked_at", repr(time.time()))
        pipe.delete(f"{PREFIX}keyname:{rec['name']}")
        pipe.execute()
        return key_id
