"""Predictions for any number of utterances through the service, and the CSV `unilabel predict` writes.

One request may carry at most MAX_PREDICT_BODY_BYTES (8 MiB by default), MAX_PREDICT_VALUES numbers and
MAX_PREDICT_BATCH utterances (4,096). The client does not know a server's settings, so it sends requests of
at most half the default bytes and a quarter of the default utterances, and a request the server still finds
too large (an operator lowered a limit) is split in two and sent again.

A key may also have a quota of predictions a minute. A request over what is left of this minute's is refused
with a 429 and the seconds until the next minute (Retry-After): it is sent again once they have passed, so a
set larger than the quota takes as many minutes as it needs. A request of more utterances than the quota
admits in any minute is a 413 saying how many one request may hold: the rest go in requests that size.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from remote.errors import ClientError

QUOTA_FIELD = "quota.predictions_per_minute"  # the error field of the key's per-minute quota
# waits for one request the quota refuses before giving up: each waits for the next minute, whose whole quota
# it fits, so only another client of the same key can take that minute from it again and again
QUOTA_WAITS = 5
CHUNK_BYTES = 4 * 1024**2
CHUNK_UTTERANCES = 1024
CSV_COLUMNS = ("id", "split", "pred", "pred_T", "pred_A", "pred_V")  # unilabel predict's predictions.csv
API_FIELDS = ("sentiment", "text", "audio", "vision")


class Predicts(Protocol):
    def predict(self, model_id: str, utterances: list[dict[str, Any]]) -> dict[str, Any]: ...


def chunks(utterances: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of utterances, each under CHUNK_BYTES of JSON and CHUNK_UTTERANCES."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for utterance in utterances:
        n = len(json.dumps(utterance)) + 2
        if chunk and (size + n > CHUNK_BYTES or len(chunk) == CHUNK_UTTERANCES):
            yield chunk
            chunk, size = [], 0
        chunk.append(utterance)
        size += n
    if chunk:
        yield chunk


def _too_large(status: int, error: dict[str, Any]) -> bool:
    """The server's answer to a request over one of its limits (bytes or numbers: 413; utterances: 422)."""
    if status == 413 and error.get("field") == "body":
        return True
    return status == 422 and error.get("field") == "body.utterances" and "at most" in error.get("message", "")


def _quota_limit(exc: ClientError) -> int | None:
    """The key's predictions a minute, as a quota error names it: the server's setting
    (``QUOTA_PREDICTIONS_PER_MINUTE=600``) or the key's own (``predictions_per_minute=600``)."""
    found = re.search(r"predictions_per_minute=(\d+)", exc.error.get("message", ""), re.IGNORECASE)
    return int(found[1]) if found else None


def _per_request(exc: ClientError) -> int | None:
    """How many utterances one request may hold, from the 413 of a request of more than the key's quota admits
    in any minute: the quota itself (``send at most N per request``); None for any other answer."""
    if exc.status != 413 or exc.error.get("field") != QUOTA_FIELD:
        return None
    limit = _quota_limit(exc)
    return limit if limit else None


def quota_words(limit: int | None) -> str:
    """The key's per-minute prediction quota in words, with its number when the service's answer named it."""
    return f"the key's quota of {limit:,} predictions a minute" if limit is not None else "the key's quota"


class QuotaGaveUp(RuntimeError):
    """The key's per-minute quota refused one request QUOTA_WAITS + 1 times in a row, each after its wait."""


class _Cut(Exception):
    """A request held more utterances than the key's per-minute quota admits; ``most``: how many it does."""

    def __init__(self, most: int) -> None:
        super().__init__(most)
        self.most = most


def _send(
    client: Predicts,
    model_id: str,
    chunk: list[dict[str, Any]],
    wait: Callable[[int | None, float], None],
    out: list[dict[str, Any]],
) -> None:
    """Append to ``out`` the predictions of one request, or of its halves when the server finds it too large.
    A 429 of the key's per-minute quota is waited out (``wait(limit, seconds)``) and the same request sent
    again, at most QUOTA_WAITS times (then QuotaGaveUp); a request over what that quota admits in any minute
    raises _Cut. Appended as each answer comes, a first half's predictions stay in ``out`` however its
    second half ends, so that the caller sends none of them again."""
    waits = 0
    while True:
        try:
            out += client.predict(model_id, chunk)["predictions"]
            return
        except ClientError as exc:
            if exc.status == 429 and exc.error.get("field") == QUOTA_FIELD and exc.retry_after is not None:
                if waits == QUOTA_WAITS:
                    raise QuotaGaveUp(
                        f"{quota_words(_quota_limit(exc))} refused a request of {len(chunk)} utterances "
                        f"{waits + 1} times in a row, each after the wait it asked for: another client may "
                        "be using this key (`unilabel-remote usage` shows what it uses)"
                    ) from exc
                waits += 1
                wait(_quota_limit(exc), exc.retry_after)
                continue
            most = _per_request(exc)
            if most is not None and most < len(chunk):
                raise _Cut(most) from exc
            if len(chunk) < 2 or not _too_large(exc.status, exc.error):
                raise
            half = len(chunk) // 2
            _send(client, model_id, chunk[:half], wait, out)
            _send(client, model_id, chunk[half:], wait, out)
            return


def predict_all(
    client: Predicts,
    model_id: str,
    utterances: list[dict[str, Any]],
    on_progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[int | None, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The model's predictions for every utterance, in order; ``on_progress(done, total)`` after each
    request. A request the key's per-minute quota refuses waits the seconds the service asks for
    (``on_wait(limit, seconds)`` first: the quota's predictions a minute, if the answer names it) and is sent
    again; after QUOTA_WAITS waits for the same request, QuotaGaveUp (a RuntimeError) says so, and how many
    of the utterances were predicted before. ``out``: an empty list they are appended to as each answer
    comes (and returned), so that a caller ended by another error or an interrupt knows how many were made."""

    def wait(limit: int | None, seconds: float) -> None:
        if on_wait is not None:
            on_wait(limit, seconds)
        sleep(seconds)

    out = [] if out is None else out
    most: int | None = None  # utterances one request may hold under the key's quota, once a 413 said so
    try:
        for chunk in chunks(utterances):
            start = 0
            while start < len(chunk):
                piece = chunk[start : start + most] if most else chunk[start:]
                done = len(out)
                try:
                    _send(client, model_id, piece, wait, out)
                except _Cut as cut:  # smaller than the piece it came from, or after progress: this ends
                    most = cut.most
                start += len(out) - done  # a cut piece goes on after what it predicted before the cut
                if on_progress is not None and len(out) > done:
                    on_progress(len(out), len(utterances))
    except QuotaGaveUp as exc:
        done_words = predicted_words(len(out), len(utterances), "it gave up")
        raise QuotaGaveUp(f"{exc}; {done_words}") from exc.__cause__
    return out


def predicted_words(done: int, total: int, before: str) -> str:
    """How many of a set were predicted when predict_all ended early, ``before`` what."""
    return f"{done:,} of {total:,} utterances were predicted before {before}"


def write_predictions_csv(
    path: str | Path, predictions: list[dict[str, Any]], splits: Mapping[str, str]
) -> None:
    """``predictions`` (the API's) as `unilabel predict` writes them: id, split, pred, pred_T, pred_A, pred_V
    (blank for a modality the model left out, and for the split of an utterance that named none). Written
    whole or not at all: an interrupt leaves no partial CSV, nor a file it replaced cut short."""
    from models.report import write_output_bytes  # pandas: only when a CSV is written

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # as pandas writes unilabel predict's (csv's is \r\n)
    writer.writerow(CSV_COLUMNS)
    for p in predictions:
        # float32's shortest text, as `unilabel predict` writes it (the model computes in float32;
        # JSON carried it as a float64 with 17 digits)
        values = ["" if p.get(k) is None else str(np.float32(p[k])) for k in API_FIELDS]
        writer.writerow([p["id"], splits.get(p["id"], ""), *values])
    write_output_bytes(path, text.getvalue().encode("utf-8"))
