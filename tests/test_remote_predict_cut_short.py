"""`unilabel-remote predict --all` ended early by anything but the quota (an error answer, a lost connection,
Ctrl-C or SIGTERM) after some of its requests were answered: the line it ends with says, as the quota's does,
how many of the utterances were predicted and that nothing was written (remote/predict_command.py)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from models.interrupts import Interrupted
from remote import batch_predict, cli
from remote.errors import ClientError
from tests.remote_fake import reach_fake_service

URL = "http://service.test"
CANNOT_REACH = (
    f"error: --url {URL}: cannot reach the service (connection refused) (is it running? the local stack: "
    "`python scripts/stack.py status` prints its URL); set --url or UNILABEL_URL"
)


class _Ending:
    """A service that takes at most ``body`` utterances a request (more: a 413 on the body, which the client
    splits in two) and answers ``answered`` requests, then ends the command with ``ending``."""

    def __init__(self, ending: BaseException, answered: int, body: int = 2) -> None:
        self.ending, self.answered, self.body, self.sizes = ending, answered, body, []

    def predict(self, model_id: str, utterances: list[dict]) -> dict:
        self.sizes.append(len(utterances))
        if len(utterances) > self.body:
            raise ClientError(413, {"code": "too_large", "field": "body", "message": "too large"})
        if self.answered == 0:
            raise self.ending
        self.answered -= 1
        return {"predictions": [{"id": u["id"], "sentiment": 0.5} for u in utterances]}


def _predict(monkeypatch, tmp_path: Path, server: _Ending, output: bool) -> tuple[int, Path]:
    reach_fake_service(monkeypatch, server)
    monkeypatch.setattr(batch_predict, "CHUNK_UTTERANCES", 4)
    batch, out = tmp_path / "batch.json", tmp_path / "preds.csv"
    batch.write_text(json.dumps([{"id": f"u{i}"} for i in range(10)]))
    args = ["--url", URL, "--key", "k", "predict", "m", "--input", str(batch)]
    try:
        return cli.main(args + (["-o", str(out)] if output else [])), out
    except KeyboardInterrupt as exc:  # what a user sees as a traceback
        pytest.fail(f"the interrupt escaped main: {exc!r}")


ENDINGS = {  # how each ends the command (a new one each time: a note added stays) and its line if alone
    "404": (
        lambda: ClientError(404, {"code": "not_found", "message": "no model m"}),
        2,
        "error: HTTP 404 not_found: no model m",
    ),
    "500": (
        lambda: ClientError(500, {"code": "internal", "message": "boom"}),
        2,
        "error: HTTP 500 internal: boom",
    ),
    "refused": (lambda: httpx.ConnectError("connection refused"), 2, CANNOT_REACH),
    "reset": (lambda: httpx.ReadError("connection reset by peer"), 2, "error: connection reset by peer"),
    "Ctrl-C": (KeyboardInterrupt, 130, "unilabel-remote predict: interrupted"),
    "SIGTERM": (lambda: Interrupted(signal.SIGTERM), 143, "unilabel-remote predict: interrupted"),
}


@pytest.mark.parametrize("output", [True, False], ids=["-o", "stdout"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_predict_ended_after_some_requests_says_how_many_were_predicted_and_that_none_was_written(
    monkeypatch, tmp_path: Path, capsys, ending: str, output: bool
) -> None:
    """Each request of 4 is split in two (the body's limit); the fourth half is not answered, after 6 of the
    10 utterances were predicted (the progress line said 4: the last request's first half counts too)."""
    make, status, line = ENDINGS[ending]
    server = _Ending(make(), answered=3)
    code, out = _predict(monkeypatch, tmp_path, server, output)
    captured = capsys.readouterr()
    assert code == status
    assert server.sizes == [4, 2, 2, 4, 2, 2]
    where = f"to {out}" if output else "(no JSON printed)"
    before = "the interrupt" if status > 128 else "the error"
    said = f"{line}; 6 of 10 utterances were predicted before {before}; nothing was written {where}"
    assert captured.err.splitlines() == ["predicted 4 of 10", said]
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_predict_ended_before_any_answer_says_only_what_ended_it(
    monkeypatch, tmp_path: Path, capsys, ending: str
) -> None:
    make, status, line = ENDINGS[ending]
    code, out = _predict(monkeypatch, tmp_path, _Ending(make(), answered=0, body=4), output=False)
    assert code == status
    assert capsys.readouterr().err.splitlines() == [line]


def test_predict_all_keeps_what_it_predicted_in_the_list_given(monkeypatch) -> None:
    """A caller of predict_all ended early still has every prediction made, a split request's first half's
    included."""
    monkeypatch.setattr(batch_predict, "CHUNK_UTTERANCES", 4)
    server, out = _Ending(ClientError(500, {"code": "internal", "message": "boom"}), answered=3), []
    with pytest.raises(ClientError, match="boom"):
        batch_predict.predict_all(server, "m", [{"id": f"u{i}"} for i in range(10)], out=out)
    assert [p["id"] for p in out] == [f"u{i}" for i in range(6)]
