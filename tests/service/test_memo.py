"""The per-process memos: bounded by bytes, least recently used evicted first."""

from __future__ import annotations

from service.serving import SizedLRU, body_key


def test_body_key_is_exact_bytes() -> None:
    assert body_key(b'{"a":1}') == body_key(b'{"a":1}')
    assert body_key(b'{"a":1}') != body_key(b'{"a": 1}')
    assert len(body_key(b"")) == 16


def test_lru_evicts_least_recently_used_by_size() -> None:
    memo: SizedLRU[str, int] = SizedLRU(max_bytes=10)
    memo.put("a", 1, 4)
    memo.put("b", 2, 4)
    assert memo.get("a") == 1  # a is now the most recently used
    memo.put("c", 3, 4)  # 12 bytes > 10: b goes
    assert memo.get("b") is None
    assert memo.get("a") == 1 and memo.get("c") == 3
    assert memo.size == 8 and len(memo) == 2


def test_lru_replaces_and_skips_oversized() -> None:
    memo: SizedLRU[str, str] = SizedLRU(max_bytes=10)
    memo.put("a", "small", 2)
    memo.put("a", "larger", 6)
    assert memo.size == 6 and len(memo) == 1 and memo.get("a") == "larger"
    memo.put("big", "x", 11)
    assert memo.get("big") is None and memo.get("a") == "larger"


def test_zero_bytes_turns_it_off() -> None:
    memo: SizedLRU[str, int] = SizedLRU(max_bytes=0)
    memo.put("a", 1, 1)
    assert memo.get("a") is None and memo.size == 0
