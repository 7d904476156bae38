"""`unilabel-admin keys create` cut short (Redis not answering in REDIS_TIMEOUT_S, or Ctrl-C) after any of its
round trips to Redis leaves what its message says: either the key, which `keys list` shows and `keys revoke`
takes back, or nothing, so that the name can be created again; never a name taken by a key nobody can see or
revoke (service/keys.py)."""

from __future__ import annotations

import pytest
import redis
from redis.connection import AbstractConnection
from redis.exceptions import RedisError, TimeoutError

from service.keys import KeyProblem, KeyStore


def test_a_create_cut_short_after_any_answer_leaves_the_key_or_nothing(settings, monkeypatch) -> None:
    real = AbstractConnection.read_response
    cut = 0
    while True:
        cut += 1
        redis.Redis.from_url(settings.redis_url).flushdb()
        calls = 0

        def read_response(self, *args, cut=cut, **kwargs):
            nonlocal calls
            calls += 1
            if calls == cut:  # Redis did what was asked; its answer never comes
                raise TimeoutError("Timeout reading from socket")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "read_response", read_response)
        try:
            KeyStore.from_url(settings.redis_url).create("alice")
            finished = True
        except RedisError:
            finished = False
        monkeypatch.setattr(AbstractConnection, "read_response", real)
        if finished:  # no answer left to cut: every round trip was tried
            break
        keys = KeyStore.from_url(settings.redis_url)
        listed = [k for k in keys.list() if k["name"] == "alice" and k["revoked_at"] is None]
        if listed:  # made: `keys list` tells, and revoke frees the name
            keys.revoke("alice")
        try:
            keys.create("alice")
        except KeyProblem as exc:
            pytest.fail(f"cut after answer {cut}: the name is taken by no key `keys list` shows ({exc})")
    assert cut > 2
