"""The service client's command line without a service: bad or unreachable URLs and upload paths that hold no
dataset are named, no traceback."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from remote.cli import build_parser, main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", [f"http://127.0.0.1:{_closed_port()}", "127.0.0.1:8000", "notaurl"])
def test_unreachable_or_malformed_url_is_named(url: str, capsys) -> None:
    assert main(["--url", url, "datasets"]) == 2
    err = capsys.readouterr().err
    assert f"error: --url {url}: cannot reach the service (" in err and "UNILABEL_URL" in err
    assert "Traceback" not in err


def test_upload_names_a_path_that_holds_no_dataset_before_calling(tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: each case fails before any request
    (tmp_path / "utterances.csv").write_text("id,split,label\n")
    pair = [str(tmp_path / "utterances.csv"), str(tmp_path / "features.npz")]
    cases = [
        ([str(tmp_path / "nope")], f"{tmp_path / 'nope'}: no such file (upload a dataset folder, an archive"),
        ([str(tmp_path)], f"{tmp_path}: not a dataset folder (no features.npz in it)"),
        (pair, f"{tmp_path / 'features.npz'}: no such file"),
        (pair[:1], f"{pair[0]}: give features.npz beside it, or the dataset folder {tmp_path}"),
    ]
    for args, message in cases:
        assert main(["--url", url, "upload", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and "Traceback" not in err


def test_hyperparameters_are_set_as_in_unilabel_train(capsys) -> None:
    """`--set` as `unilabel train` spells it; `--hp`, the client's earlier name, still works. One without a
    name and an = is named as `unilabel train` names it, an `error:` line and exit 2 as every bad input
    (it was a bare SystemExit message, exit 1), before any request."""
    for name in ("submit", "run"):
        args = build_parser().parse_args([name, "X", "--set", "beta=1", "--hp", "modalities=text,audio"])
        assert args.hp == ["beta=1", "modalities=text,audio"]
    url = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: a request would be named "cannot reach"
    for name in ("submit", "run"):
        for given, problem in (("beta", ""), ("=3", " (no name before the =)")):
            assert main(["--url", url, name, "X", "--set", "beta=1", "--set", given]) == 2
            assert capsys.readouterr().err == f"error: --set {given}: expected name=value{problem}\n"


def test_predict_input_file_is_named(tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: each case fails before any request
    (tmp_path / "bad.json").write_text("{bad")
    (tmp_path / "other.json").write_text('{"rows": []}')
    for name, message in (
        ("nope.json", "no such file"),
        ("bad.json", "not JSON (Expecting property name"),
        ("other.json", 'expected a JSON list of utterances or {"utterances": [...]}'),
    ):
        assert main(["--url", url, "predict", "0" * 32, "--input", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --input {tmp_path / name}: {message}") and "Traceback" not in err


@pytest.mark.parametrize("command", ["submit", "run"])
def test_strategy_help_names_every_strategy(command: str, capsys) -> None:
    from models.strategies import STRATEGIES

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "label strategy: " + ", ".join(STRATEGIES[:-1]) + f" or {STRATEGIES[-1]}" in text


def test_download_line_names_the_text_model_to_give(tmp_path: Path) -> None:
    """A model that reads text with one of the server's text models comes with only that model's folder name
    in model.json: the line after a download says to give a copy with `--text-model`."""
    import json

    from remote.listing import download_line

    files = ["model.json", "model.safetensors"]
    (tmp_path / "model.json").write_text(json.dumps({"net_spec": {"text_model": None}}))
    assert download_line("m1", tmp_path, files, []) == (
        f"model m1: 2 files in {tmp_path}; predict with `unilabel predict {tmp_path} DATA`"
    )
    (tmp_path / "model.json").write_text(json.dumps({"net_spec": {"text_model": "my-bert"}}))
    assert download_line("m1", tmp_path, files, ["card.json"]) == (
        f"model m1: 2 files in {tmp_path} (the server has no card.json); it reads text with the server's "
        f"text model 'my-bert': predict with `unilabel predict {tmp_path} DATA --text-model DIR`, DIR your "
        "copy of it"
    )


def test_predict_dataset_is_a_local_folder_and_an_uploaded_id_is_named(tmp_path: Path, capsys) -> None:
    """`--dataset` reads a local folder (the service does not send an upload back): an uploaded dataset's id
    there is named as one, and predict without any input says what it needs, both before any request."""
    url = f"http://127.0.0.1:{_closed_port()}"
    uploaded, missing = "ab" * 32, str(tmp_path / "nope")
    not_here = "no such folder or archive here (a local dataset)"
    for given, message in (
        (uploaded, f"--dataset {uploaded}: {not_here}; it looks like an uploaded dataset's id: give the"),
        (missing, f"--dataset {missing}: {not_here}\n"),
    ):
        assert main(["--url", url, "predict", "0" * 32, "--dataset", given]) == 2
        assert capsys.readouterr().err.startswith(f"error: {message}")
    assert main(["--url", url, "predict", "0" * 32]) == 2
    needs = "error: predict needs --input FILE.json or --dataset PATH (a dataset folder)\n"
    assert capsys.readouterr().err == needs


def test_an_error_answer_is_named_with_its_details_and_a_missing_key_is_hinted(monkeypatch, capsys) -> None:
    """A 401 without a key says how to pass one; an error's further details follow it, a line each; a proxy's
    error page (not the API's JSON) is shown as its status and text. Each exits 2, no traceback."""
    from tests.service.conftest import canned_server

    monkeypatch.delenv("UNILABEL_API_KEY", raising=False)
    error = {"code": "unauthorized", "message": "no API key", "details": [{}, {"field": "f", "problem": "p"}]}
    with canned_server(lambda *_: (401, json.dumps({"error": error}))) as url:
        assert main(["--url", url, "datasets"]) == 2
        err = capsys.readouterr().err
        assert err == (
            "error: HTTP 401 unauthorized: no API key\n"
            "  pass an API key: --key KEY or env UNILABEL_API_KEY\n"
            "  f: p\n"
        )
        assert main(["--url", url, "--key", "k", "datasets"]) == 2  # a key was given: what to check of it
        assert "pass an API key" not in capsys.readouterr().err
    with canned_server(lambda *_: (502, "<html>Bad Gateway</html>")) as url:
        assert main(["--url", url, "datasets"]) == 2
        assert capsys.readouterr().err == "error: HTTP 502 http_error: <html>Bad Gateway</html>\n"


def test_wait_raises_an_error_answer_at_once_and_names_its_timeouts(capsys) -> None:
    """`wait` rides out a 503 (an API restarting) until --timeout, but another error answer (404) ends it at
    once; a job still running at --timeout, or a service away that long, is named. Each exits 2."""
    from tests.service.conftest import canned_server

    job_id, away = "a" * 32, "Redis is away"
    running = {"id": job_id, "state": "running", "strategy": "mug", "seed": 1, "progress": None}
    not_found = {"error": {"code": "not_found", "message": f"no job {job_id}"}}
    answers = {
        "404": (404, json.dumps(not_found)),
        "503": (503, json.dumps({"error": {"code": "unavailable", "message": away}})),
        "running": (200, json.dumps(running)),
    }
    for case, message in (
        ("404", f"error: HTTP 404 not_found: no job {job_id}\n"),
        ("503", f"error: job {job_id}: service unreachable (HTTP 503 unavailable: {away}) after 0.3 s\n"),
        ("running", f"error: job {job_id} still running after 0.3 s\n"),
    ):
        with canned_server(lambda *_, case=case: answers[case]) as url:
            started = time.monotonic()
            assert main(["--url", url, "wait", job_id, "--timeout", "0.3"]) == 2, case
            assert capsys.readouterr().err.endswith(message), case
            assert time.monotonic() - started < (0.3 if case == "404" else 5), case


def test_run_names_a_job_that_failed_and_saves_nothing(tmp_path: Path) -> None:
    """`unilabel-remote run`: a job that failed is raised with its error (main prints it and exits 2), and no
    labels folder is made for it."""
    from remote.workflow import run_all

    class Client:
        def upload_with_status(self, data: Path) -> tuple[dict, bool]:
            return {"id": "d1", "n": 3, "splits": {"train": 3}, "modalities": {"audio": {"shape": [5]}}}, True

        def submit(self, *args: object, **kwargs: object) -> dict:
            return {"id": "j1", "state": "queued", "strategy": "mug", "seed": 1}

        def wait(self, job_id: str, **kwargs: object) -> dict:
            return {"id": job_id, "state": "failed", "strategy": "mug", "seed": 1, "error": "boom"}

    with pytest.raises(RuntimeError, match="^job j1 failed: boom$"):
        run_all(Client(), tmp_path / "data", tmp_path / "out", say=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_a_url_that_leads_elsewhere_is_named_with_what_to_check(capsys) -> None:
    """The newcomer's --url mistakes name --url and what to check, each on one line, exit 2: another web
    server there (its HTML error page was printed raw over many lines; its 200 page was a JSON decoder's
    "Expecting value"), something there that closes without answering ("Server disconnected without sending a
    response."), the API's /v1 written into the base URL ("no route GET /v1/v1/jobs"), nothing listening (no
    hint that the service may not run). A gateway's error (a proxy before a service that is away) gets no
    hint about the URL: it may be right."""
    from tests.service.conftest import canned_server

    page = "<!DOCTYPE HTML>\n<html>\n  <body>\n    <h1>Error response</h1>\n" + "  <p>x</p>\n" * 80
    with canned_server(lambda *_: (404, page)) as url:
        assert main(["--url", url, "jobs"]) == 2
        lines = capsys.readouterr().err.splitlines()
        head = "error: HTTP 404 http_error: <!DOCTYPE HTML> <html> <body> <h1>Error response"
        assert lines[0].startswith(head)
        assert len(lines[0]) < 260 and lines[0].endswith("…")
        assert lines[1:] == [
            f"  that answer is not the label service's (its errors are JSON): is --url {url} right? "
            "set --url or UNILABEL_URL"
        ]
    with canned_server(lambda *_: (200, "<html>my web app</html>")) as url:
        assert main(["--url", url, "jobs"]) == 2
        assert capsys.readouterr().err == (
            f"error: --url {url}: the answer is not JSON, so not the label service's: is --url right? "
            "set --url or UNILABEL_URL\n"
        )
    with canned_server(lambda *_: (504, "<html>Gateway Timeout</html>")) as url:
        assert main(["--url", url, "jobs"]) == 2
        assert capsys.readouterr().err == "error: HTTP 504 http_error: <html>Gateway Timeout</html>\n"

    with socket.socket() as listener:  # accepts, then closes without a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mute = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def close_one() -> None:
            conn, _addr = listener.accept()
            conn.recv(65536)
            conn.close()

        thread = threading.Thread(target=close_one, daemon=True)
        thread.start()
        assert main(["--url", mute, "jobs"]) == 2
        thread.join(5)
        assert capsys.readouterr().err.startswith(
            f"error: --url {mute}: no HTTP answer from there "
            "(Server disconnected without sending a response.): is that the label service's address? "
            "set --url or UNILABEL_URL"
        )

    for base in ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/"):
        assert main(["--url", base, "jobs"]) == 2  # said before any request: nothing listens on 8000 here
        assert capsys.readouterr().err == (
            f"error: --url {base}: give the service's base URL, without /v1 (e.g. http://127.0.0.1:8000); "
            "set --url or UNILABEL_URL\n"
        )
    closed = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--url", closed, "jobs"]) == 2
    assert "(is it running? the local stack: `python scripts/stack.py status` prints its URL)" in (
        capsys.readouterr().err
    )


def test_a_key_is_sent_without_the_whitespace_around_it_and_one_inside_is_named(monkeypatch, capsys) -> None:
    """A key read from a file keeps its newline (`Illegal header value b'Bearer ulk_...\\n'` from httpx before
    any request): the whitespace around it is dropped, as no key holds any. Whitespace, or a character no key
    has, inside it is named with where the key came from, exit 2, nothing sent; a key of only whitespace is
    no key."""
    from tests.service.conftest import canned_server

    sent: list[str | None] = []

    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        sent.append(headers.get("Authorization"))
        if "Authorization" not in headers:
            return 401, json.dumps({"error": {"code": "unauthorized", "message": "no API key"}})
        return 200, json.dumps({"jobs": []})

    with canned_server(answer) as url:
        monkeypatch.setenv("UNILABEL_API_KEY", "ulk_env\n")
        assert main(["--url", url, "jobs", "--json"]) == 0
        assert main(["--url", url, "--key", " ulk_flag\r\n", "jobs", "--json"]) == 0
        assert sent == ["Bearer ulk_env", "Bearer ulk_flag"]
        capsys.readouterr()
        inside = "holds whitespace inside it, which no key does (keys are ASCII letters, digits, _ and -)"
        for key_args, env, message in (
            ([], "ulk_a b\n", f"error: env UNILABEL_API_KEY: the API key {inside}: check its value\n"),
            (["--key", "ulk_a\tb"], "", f"error: --key: the API key {inside}: check its value\n"),
            (["--key", "ulk_é"], "", "error: --key: the API key holds 'é' inside it, which no key does"),
        ):
            monkeypatch.setenv("UNILABEL_API_KEY", env)
            assert main(["--url", url, *key_args, "jobs"]) == 2
            assert capsys.readouterr().err.startswith(message)
        assert len(sent) == 2  # none of them was sent
        monkeypatch.setenv("UNILABEL_API_KEY", " \n")
        assert main(["--url", url, "jobs"]) == 2
        assert sent[2:] == [None]
        assert capsys.readouterr().err.endswith("  pass an API key: --key KEY or env UNILABEL_API_KEY\n")


def test_python_m_remote_client_still_runs_the_command_line() -> None:
    """`python -m remote.client ...`, documented before the command line moved to remote/cli.py, ran nothing
    and exited 0: a script that used it was told its upload or predict succeeded."""
    import subprocess
    import sys

    from remote.localstack import REPO

    url = f"http://127.0.0.1:{_closed_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "remote.client", "--url", url, "jobs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.startswith(f"error: --url {url}: cannot reach"), done


def test_o_into_a_pipe_or_through_a_link_writes_into_what_it_names(tmp_path: Path, capsys) -> None:
    """`labels -o` and `predict -o` wrote into the path as given (Path.write_text, open) until they were
    written atomically: a temp file renamed onto it replaced a named pipe or /dev/null (as root; elsewhere no
    temp file may be made in /dev: an error) and a link, instead of writing into the pipe, the device or the
    file the link names."""
    import os
    import stat

    from tests.service.conftest import canned_server

    pipe, real, link = tmp_path / "pipe", tmp_path / "real.csv", tmp_path / "link.csv"
    os.mkfifo(pipe)
    real.write_text("before\n")
    link.symlink_to(real.name)
    (tmp_path / "batch.json").write_text('[{"id": "u1", "features": {"audio": [0.5]}}]')
    predicted = {"predictions": [{"id": "u1", "sentiment": 0.5, "text": None, "audio": 0.5, "vision": None}]}

    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        return (200, json.dumps(predicted)) if path.endswith("/predict") else (200, "id,label\nu1,0.5\n")

    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # so that the command's open of it does not block
    try:
        with canned_server(answer) as url:
            for out in (pipe, link):
                assert main(["--url", url, "--key", "k", "labels", "j1", "-o", str(out)]) == 0
                assert capsys.readouterr().out == f"labels of job j1 written to {out} (csv)\n"
            assert stat.S_ISFIFO(os.stat(pipe).st_mode) and os.read(reader, 1000) == b"id,label\nu1,0.5\n"
            assert link.is_symlink() and real.read_text() == "id,label\nu1,0.5\n"
            batch = ["--input", str(tmp_path / "batch.json")]
            for out in (pipe, link):
                assert main(["--url", url, "--key", "k", "predict", "m", *batch, "-o", str(out)]) == 0
        csv = "id,split,pred,pred_T,pred_A,pred_V\nu1,,0.5,,0.5,\n"
        assert stat.S_ISFIFO(os.stat(pipe).st_mode) and os.read(reader, 1000) == csv.encode()
    finally:
        os.close(reader)
    assert link.is_symlink() and real.read_text() == csv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.json", "link.csv", "pipe", "real.csv"]
