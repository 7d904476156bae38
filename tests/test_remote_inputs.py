"""Prediction inputs taken from a dataset follow the model's input spec (remote/client.py), and any number of
them reach a server in requests it takes (remote/batch_predict.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from remote.client import utterances_from_dataset
from tests.remote_fake import reach_fake_service


def test_utterances_follow_the_model_input_spec(small_synth: Path, tmp_path: Path) -> None:
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = [f"utterance {i}" for i in range(len(table))]
    table.to_csv(data / "utterances.csv", index=False)

    everything = utterances_from_dataset(data, "test", 2)
    assert set(everything[0]["features"]) == {"text", "audio", "vision"} and "transcript" in everything[0]

    # a model that reads text from the transcript and was trained on text and audio only
    spec = {"text": {"transcript": True}, "audio": {"dim": 16, "sequence": False}}
    chosen = utterances_from_dataset(data, "test", 2, spec)
    assert [u["id"] for u in chosen] == [u["id"] for u in everything]
    assert set(chosen[0]["features"]) == {"audio"} and chosen[0]["transcript"] == everything[0]["transcript"]

    # a model on features only gets no transcript
    spec = {m: {"dim": d, "sequence": False} for m, d in (("text", 32), ("audio", 16), ("vision", 24))}
    assert all("transcript" not in u for u in utterances_from_dataset(data, "test", 2, spec))


class _Server:
    """What a service with small limits answers: at most ``batch`` utterances and ``values`` numbers a request
    (the 422 and 413 of service/predict_input.py); the requests it saw."""

    def __init__(self, batch: int, values: int) -> None:
        self.batch, self.values, self.sizes = batch, values, []

    def predict(self, model_id: str, utterances: list[dict]) -> dict:
        from remote.errors import ClientError

        self.sizes.append(len(utterances))
        if len(utterances) > self.batch:
            raise ClientError(
                422, {"field": "body.utterances", "message": f"at most {self.batch} utterances"}
            )
        if sum(len(u["features"]["audio"]) for u in utterances) > self.values:
            raise ClientError(413, {"field": "body", "message": "more than MAX_PREDICT_VALUES numbers"})
        return {"predictions": [{"id": u["id"], "sentiment": float(len(u["id"]))} for u in utterances]}


def test_predictions_of_any_number_come_in_requests_the_server_takes(monkeypatch) -> None:
    from remote import batch_predict
    from remote.errors import ClientError

    monkeypatch.setattr(batch_predict, "CHUNK_UTTERANCES", 8)
    utterances = [{"id": "u" * (i + 1), "features": {"audio": [0.5] * 4}} for i in range(21)]
    assert [len(c) for c in batch_predict.chunks(utterances)] == [8, 8, 5]
    monkeypatch.setattr(batch_predict, "CHUNK_BYTES", 3 * len(json.dumps(utterances[-1])))
    assert all(len(c) <= 3 for c in batch_predict.chunks(utterances))
    monkeypatch.setattr(batch_predict, "CHUNK_BYTES", 4 * 1024**2)

    server = _Server(batch=3, values=8)  # 3 utterances, but only 2 of them in numbers
    seen = []
    out = batch_predict.predict_all(server, "m", utterances, on_progress=lambda d, t: seen.append((d, t)))
    assert [p["id"] for p in out] == [u["id"] for u in utterances]  # all of them, in order
    # each chunk of 8 was tried whole, then halved until the server took it: every utterance sent once
    assert server.sizes[:4] == [8, 4, 2, 2] and sum(n for n in server.sizes if n <= 2) == 21
    assert seen == [(8, 21), (16, 21), (21, 21)]
    with pytest.raises(ClientError, match="413"):  # one utterance over the limit: no split helps
        batch_predict.predict_all(_Server(batch=3, values=3), "m", utterances[:1])
    with pytest.raises(ClientError, match="404"):  # any other answer is raised as it is

        class Gone(_Server):
            def predict(self, model_id: str, utterances: list[dict]) -> dict:
                raise ClientError(404, {"field": "model_id", "message": "no such model"})

        batch_predict.predict_all(Gone(9, 9), "m", utterances)


class _Quota:
    """A service whose key may predict ``limit`` utterances a minute, on a clock that only ``sleep`` moves:
    a request over what is left of the minute is a 429 with the seconds to its end (Retry-After), one over the
    whole minute's a 413 saying how many a request may hold (service/quotas.py). The requests it saw."""

    def __init__(self, limit: int, now: float = 50.0, own: bool = False) -> None:
        from service.keys import Caller

        self.limit, self.now, self.used, self.minute, self.sizes, self.slept = limit, now, 0, 0, [], []
        # the server's QUOTA_PREDICTIONS_PER_MINUTE, or the key's own limit: their messages differ
        self.caller = Caller("a" * 16, "k", limits={"predictions_per_minute": limit} if own else {})

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def predict(self, model_id: str, utterances: list[dict]) -> dict:
        from remote.errors import ClientError
        from service.quotas import over_any_minute, too_many

        self.sizes.append(len(utterances))
        name, n = "predictions_per_minute", len(utterances)
        if n > self.limit:  # the service's own words, which the client reads
            refused = over_any_minute(self.caller, name, self.limit, n)
            raise ClientError(413, {"field": refused.field, "message": refused.message})
        if int(self.now // 60) != self.minute:
            self.minute, self.used = int(self.now // 60), 0
        if self.used + n > self.limit:
            left = math.ceil(60 - self.now % 60)
            refused = too_many(self.caller, name, self.limit, left, f"{self.used} this minute")
            error = {"field": refused.field, "message": refused.message}
            raise ClientError(429, error, retry_after=float(refused.headers["Retry-After"]))
        self.used += n
        return {"predictions": [{"id": u["id"], "minute": self.minute} for u in utterances]}


class _Crowded(_Quota):
    """Another client takes each minute's quota before this one, from the first wait on."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.used = self.limit
        self.minute = int(self.now // 60)


class _Small(_Quota):
    """A key's quota behind a body limit that is checked first: a request of more than ``body`` utterances is
    a 413 on the body (split in two by the client); the ids of each utterance predicted, in order."""

    def __init__(self, limit: int, body: int) -> None:
        super().__init__(limit)
        self.body, self.predicted = body, []

    def predict(self, model_id: str, utterances: list[dict]) -> dict:
        from remote.errors import ClientError

        if len(utterances) > self.body:
            self.sizes.append(len(utterances))
            raise ClientError(413, {"field": "body", "message": "more than MAX_PREDICT_BODY_BYTES"})
        answer = super().predict(model_id, utterances)
        self.predicted += [p["id"] for p in answer["predictions"]]
        return answer


@pytest.mark.parametrize("own", [False, True], ids=["server-quota", "keys-own-quota"])
def test_a_set_larger_than_the_keys_quota_a_minute_waits_for_the_next_minutes(own: bool) -> None:
    """`predict --all` under a key's per-minute quota: the first 429 ended the command and dropped every
    prediction made. A 429 of that quota is waited out (the seconds of its Retry-After, said first) and the
    same request sent again; a request larger than a whole minute's quota (413, "send at most N") is cut to N;
    every utterance is predicted once, in order."""
    from remote import batch_predict

    utterances = [{"id": f"u{i}"} for i in range(10)]
    server, waits, seen = _Quota(limit=4, own=own), [], []
    out = batch_predict.predict_all(
        server,
        "m",
        utterances,
        on_progress=lambda d, t: seen.append((d, t)),
        on_wait=lambda limit, s: waits.append((limit, s)),
        sleep=server.sleep,
    )
    assert [p["id"] for p in out] == [u["id"] for u in utterances]
    assert [p["minute"] for p in out] == [0] * 4 + [1] * 4 + [2] * 2  # 4 a minute, never more
    assert server.sizes == [10, 4, 4, 4, 2, 2]  # cut to 4 after the 413; each 429 sent again once
    assert waits == [(4, 10.0), (4, 60.0)] and server.slept == [10.0, 60.0]
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_waiting_for_the_quota_is_bounded_and_only_for_its_429() -> None:
    """A request refused QUOTA_WAITS + 1 times in a row is given up, saying why (another client may use the
    key's quota); any other 429 or 413 is raised at once, unwaited."""
    from remote import batch_predict
    from remote.errors import ClientError

    server = _Crowded(limit=4)
    server.used = 4
    gave_up = "quota of 4 predictions a minute refused a request of 2 utterances 6 times in a row"
    with pytest.raises(RuntimeError, match=gave_up):
        batch_predict.predict_all(server, "m", [{"id": "a"}, {"id": "b"}], sleep=server.sleep)
    assert len(server.slept) == batch_predict.QUOTA_WAITS == 5 and server.sizes == [2] * 6

    class Refusing(_Quota):
        def __init__(self, status: int, field: str, retry_after: float | None) -> None:
            super().__init__(limit=4)
            self.error = ClientError(status, {"field": field, "message": "no"}, retry_after=retry_after)

        def predict(self, model_id: str, utterances: list[dict]) -> dict:
            self.sizes.append(len(utterances))
            raise self.error

    for status, field, retry_after in (
        (429, "quota.uploads_per_minute", 5.0),  # not this request's quota
        (429, "quota.predictions_per_minute", None),  # no Retry-After: how long to wait is unknown
        (413, "body", None),  # one utterance over the body's limit: no split helps
    ):
        server = Refusing(status, field, retry_after)
        with pytest.raises(ClientError, match=str(status)):
            batch_predict.predict_all(server, "m", [{"id": "a"}], sleep=server.sleep)
        assert server.sizes == [1] and server.slept == [], field


def test_an_error_answer_keeps_its_retry_after() -> None:
    """error_of keeps Retry-After's seconds (None without one, or for an HTTP date), its message as before."""
    import httpx

    from remote.errors import error_of

    body = {"error": {"code": "too_many_requests", "message": "retry in 23 s", "field": "quota.x"}}
    message = "HTTP 429 too_many_requests [quota.x]: retry in 23 s"
    for header, expected in (("23", 23.0), (None, None), ("Fri, 01 May 2026 10:00:00 GMT", None)):
        exc = error_of(httpx.Response(429, json=body, headers={"Retry-After": header} if header else {}))
        assert exc.retry_after == expected and str(exc) == message
    assert error_of(httpx.Response(503, text="busy", headers={"Retry-After": "2"})).retry_after == 2.0


def test_a_request_cut_to_the_quota_sends_nothing_already_predicted() -> None:
    """A request split in two for the body limit whose second half is a 413 of the key's quota ("send at most
    4") kept the first half's predictions nowhere and sent it again, using the quota twice for it: the cut
    goes on from the first utterance not yet predicted, and each is predicted once."""
    from remote import batch_predict

    utterances = [{"id": f"u{i}"} for i in range(9)]
    server, seen = _Small(limit=4, body=6), []
    out = batch_predict.predict_all(
        server, "m", utterances, on_progress=lambda d, t: seen.append((d, t)), sleep=server.sleep
    )
    assert [p["id"] for p in out] == server.predicted == [u["id"] for u in utterances]
    assert server.sizes == [9, 4, 5, 4, 4, 1, 1]  # 9 split in 4 + 5; 5 is cut: u4-u7, u8 (each 429 once)
    assert [p["minute"] for p in out] == [0] * 4 + [1] * 4 + [2]
    assert seen == [(4, 9), (8, 9), (9, 9)]


def test_giving_up_on_the_quota_says_how_many_were_predicted() -> None:
    """Given up after some requests passed, the error says how many of the set were predicted."""
    from remote import batch_predict

    server = _Crowded(limit=4)  # the first 4 pass, then another client takes every minute
    gave_up = (
        "refused a request of 4 utterances 6 times in a row, .*; "
        "4 of 10 utterances were predicted before it gave up$"
    )
    with pytest.raises(RuntimeError, match=gave_up):
        batch_predict.predict_all(server, "m", [{"id": f"u{i}"} for i in range(10)], sleep=server.sleep)
    assert server.sizes == [10, 4] + [4] * 6


@pytest.mark.parametrize("output", [True, False], ids=["-o", "stdout"])
def test_predict_that_gives_up_says_nothing_was_written(
    monkeypatch, tmp_path: Path, capsys, output: bool
) -> None:
    """`unilabel-remote predict` given up on the quota ends with one line: why, how many were predicted,
    and that nothing was written (no part of the set, which would look like all of it)."""
    from functools import partial

    from remote import batch_predict, cli, predict_command

    server = _Crowded(limit=4)

    reach_fake_service(monkeypatch, server)
    paced = partial(batch_predict.predict_all, sleep=server.sleep)
    monkeypatch.setattr(predict_command, "predict_all", paced)
    batch, out = tmp_path / "batch.json", tmp_path / "preds.csv"
    batch.write_text(json.dumps([{"id": f"u{i}"} for i in range(10)]))
    args = ["--url", "http://service.test", "--key", "k", "predict", "m", "--input", str(batch)]
    assert cli.main(args + (["-o", str(out)] if output else [])) == 2
    captured = capsys.readouterr()
    where = f"to {out}" if output else "(no JSON printed)"
    last = captured.err.splitlines()[-1]
    assert last.startswith("error: the key's quota of 4 predictions a minute refused a request of 4"), last
    said = f"; 4 of 10 utterances were predicted before it gave up; nothing was written {where}"
    assert last.endswith(said), last
    assert captured.out == "" and not out.exists()
