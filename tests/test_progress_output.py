"""Progress on a terminal is a bar; in a log file or a pipe it is lines (a bar's carriage returns would make
the log one endless line): `unilabel train`'s bars, `unilabel compare`'s and `unilabel-remote`'s job bar."""

from __future__ import annotations

import io

from models.cli_output import ProgressBars
from models.stages.common import ProgressEvent
from remote.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _train_events() -> list[ProgressEvent]:
    events = [ProgressEvent("pretrain", e, 15, e / 100, {"L_M": 1.0 / e}) for e in range(1, 16)]
    events += [ProgressEvent("meta", e, 65, 0.2 + e / 100, {"L_post[text]": 0.5}) for e in range(1, 66)]
    return events


def test_train_progress_in_a_log_is_lines() -> None:
    log = io.StringIO()
    bars = ProgressBars(stream=log)
    for event in _train_events():
        bars(event)
    bars.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "pretrain 1/15 L_M=1.000" and "pretrain 15/15 L_M=0.067" in lines
    assert lines[-1].startswith("meta 65/65") and 10 <= sum(ln.startswith("meta ") for ln in lines) <= 11


def test_train_progress_on_a_terminal_is_a_bar() -> None:
    screen = Terminal()
    bars = ProgressBars(stream=screen)
    for event in _train_events():
        bars(event)
    bars.close()
    assert "\r" in screen.getvalue() and "15/15" in screen.getvalue()


def test_quiet_train_prints_nothing() -> None:
    log = io.StringIO()
    bars = ProgressBars(False, stream=log)
    for event in _train_events():
        bars(event)
    assert log.getvalue() == ""


def _job_records() -> list[dict]:
    records = [{"state": "queued", "progress": 0.0}]
    records += [
        {"state": "running", "stage": "meta", "epoch": e, "epochs": 65, "progress": e / 65}
        | {"losses": {"L": 0.5}}
        for e in range(1, 66)
        for _ in range(2)  # polled twice per epoch
    ]
    return records + [{"state": "succeeded", "stage": "multitask", "epoch": 3, "epochs": 3, "progress": 1.0}]


def test_job_progress_in_a_log_is_a_line_per_change() -> None:
    log = io.StringIO()
    bar = ProgressBar(log)
    for job in _job_records():
        bar(job)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "queued 0%" and lines[-1] == "succeeded multitask 3/3 100%"
    assert lines[1] == "running meta 1/65 L=0.5 2%"
    assert 10 <= len(lines) <= 13  # a line a tenth, not one a poll


def test_job_progress_on_a_terminal_is_a_bar() -> None:
    screen = Terminal()
    bar = ProgressBar(screen)
    for job in _job_records():
        bar(job)
    assert "\r" in screen.getvalue() and "100%" in screen.getvalue()


def test_compare_in_a_log_says_a_line_a_run(small_synth, tiny_hp, tmp_path) -> None:
    from models.compare import compare

    said: list[str] = []
    compare(
        small_synth,
        ["copy", "none"],
        [1, 2],
        tmp_path / "cmp",
        hyperparameters=tiny_hp,
        device="cpu",
        say=said.append,
    )  # pytest's stderr is no terminal
    assert [line.split(": valid MAE")[0] for line in said] == [
        "compare 1/4: copy seed 1",
        "compare 2/4: copy seed 2",
        "compare 3/4: none seed 1",
        "compare 4/4: none seed 2",
    ]
    assert all(" Corr " in line for line in said)


def test_job_bar_closed_on_an_interrupt_ends_its_line() -> None:
    """`unilabel-remote wait` and `run` follow a job inside ``with ProgressBar()``: Ctrl-C mid-job ends the
    bar's line, so that the line said after it does not run into the bar."""
    screen = Terminal()
    try:
        with ProgressBar(screen) as bar:
            for job in _job_records()[:20]:
                bar(job)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert "running meta" in screen.getvalue() and screen.getvalue().endswith("\n")
    bar.close()  # a second close (as after a final state) draws nothing more
    assert screen.getvalue().count("\n") == 1
