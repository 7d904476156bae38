"""Stage 2 with the modalities side by side (models.stages.meta.meta_learn_modalities): same result as one
after another, bit for bit, and the generator left where the sequential run leaves it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from models.cli import build_parser, main, requested_threads
from models.config import resolve_hyperparameters
from models.dataset_loader import load_dataset
from models.pipeline import train
from models.stages.common import Cancelled, available_cpus, resolve_meta_threads
from models.stages.meta import MetaDraws, SavedModality, meta_learn_labels, meta_learn_modalities
from models.strategies.mlc import MLCDraws, mlc_learn_labels
from tests.terminal import start_at_a_terminal

VARIANTS = [
    {},
    {"label_readout": "noisy_mean", "readout_draws": 3},
    {"multimodal_denoising": False},
    {"label_noise_std": 0.3, "batch_size": 7},
]


def _hp(**over) -> dict:
    return resolve_hyperparameters(
        {"meta_epochs": 4, "mucn_hidden": 16, "meta_extra_ratio": 2, **over}, rho=3.0
    )


def _saved(n: int = 50) -> tuple[dict[str, SavedModality], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    saved = {
        m: SavedModality(
            torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.randn(n, generator=g)
        )
        for m, d in (("text", 8), ("audio", 5), ("vision", 12))
    }
    return saved, torch.randn(n, generator=g).clamp(-3, 3)


@pytest.mark.parametrize("over", VARIANTS)
def test_skip_draws_exactly_what_meta_learning_draws(over: dict) -> None:
    hp = _hp(**over)
    saved, y = _saved()
    s = saved["text"]
    ran, skipped = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    meta_learn_labels(s.unimodal, s.projected, s.projected_pred, y, hp, 3.0, ran)
    MetaDraws(len(y), hp, hp.noise_std(3.0), skipped).skip()
    assert torch.equal(ran.get_state(), skipped.get_state())


@pytest.mark.parametrize("over", VARIANTS)
def test_side_by_side_equals_one_after_another(over: dict) -> None:
    hp = _hp(**over)
    saved, y = _saved()
    gens = {t: torch.Generator().manual_seed(4) for t in (1, 2, 3)}
    events: dict[int, list] = {t: [] for t in gens}
    results = {
        t: meta_learn_modalities(
            saved, y, hp, 3.0, g, threads=t, on_epoch=lambda m, e, s, t=t: events[t].append((m, e, s))
        )
        for t, g in gens.items()
    }
    for t in (2, 3):
        assert list(results[t]) == list(saved)
        for m in saved:
            a, b = results[1][m], results[t][m]
            assert torch.equal(a.labels, b.labels), (t, m)
            assert (a.kept, a.meta_updates, a.history) == (b.kept, b.meta_updates, b.history)
        assert torch.equal(gens[1].get_state(), gens[t].get_state())
        assert sorted(events[t], key=lambda e: (e[0], e[1])) == sorted(events[1], key=lambda e: (e[0], e[1]))
    # each modality on its own generator is what the sequential run does not do: its labels differ
    s = saved["audio"]
    alone = meta_learn_labels(
        s.unimodal, s.projected, s.projected_pred, y, hp, 3.0, torch.Generator().manual_seed(4)
    )
    assert not torch.equal(alone.labels, results[1]["audio"].labels)


@pytest.mark.parametrize("threads", [1, 3])
def test_stage_2_runs_on_one_intra_op_thread_and_serialises_callbacks(threads: int) -> None:
    saved, y = _saved()
    busy = threading.Lock()
    overlaps: list[str] = []
    intra_op: set[int] = set()

    def on_epoch(m: str, epoch: int, stats: dict) -> None:
        intra_op.add(torch.get_num_threads())
        if not busy.acquire(blocking=False):
            overlaps.append(m)
            return
        try:
            threading.Event().wait(0.002)  # widen the window an unsynchronised caller would hit
        finally:
            busy.release()

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        meta_learn_modalities(
            saved, y, _hp(meta_epochs=6), 3.0, torch.Generator().manual_seed(1), threads, on_epoch
        )
        assert torch.get_num_threads() == 2  # the caller's setting is back
    finally:
        torch.set_num_threads(before)
    assert overlaps == []
    assert intra_op == {1}


def test_a_cancel_in_one_modality_stops_all_of_them_soon() -> None:
    saved, y = _saved(n=200)
    hp = _hp(meta_epochs=40)
    seen: list[tuple[str, int]] = []

    def on_epoch(m: str, epoch: int, stats: dict) -> None:
        seen.append((m, epoch))
        if m == "audio" and epoch == 2:
            raise Cancelled("cancelled on request")

    with pytest.raises(Cancelled):
        meta_learn_modalities(saved, y, hp, 3.0, torch.Generator().manual_seed(1), 3, on_epoch)
    # every modality stops at its next epoch: far fewer than 3 x 40 epochs ran
    assert max(e for m, e in seen if m == "audio") == 2
    assert len(seen) < 30


def test_a_failure_in_one_modality_is_raised_as_is() -> None:
    saved, y = _saved()
    v = saved["vision"]
    saved["vision"] = SavedModality(
        v.unimodal, v.projected[:, :5], v.projected_pred
    )  # x_m' narrower than x_m
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        meta_learn_modalities(saved, y, _hp(), 3.0, torch.Generator().manual_seed(1), 3)


def test_side_by_side_raises_the_error_the_sequential_run_raises() -> None:
    """Two modalities that both fail: the sequential run raises the first one's; side by side, the second
    failed sooner and stopped the first, so which one a run named (a divergence's stage and modality) varied
    with the timing. Now the jobs before a failed one run on, and the first in order is raised."""
    from models.stages.parallel import GeneratorJob, run_jobs

    def fails(name: str, epochs: int) -> GeneratorJob[None]:
        def run(gen: torch.Generator, on_epoch) -> None:
            for epoch in range(1, epochs + 1):
                time.sleep(0.05)
                on_epoch(epoch, {})
            raise ValueError(f"{name} diverged at epoch {epochs}")

        return GeneratorJob(run, lambda gen: None)

    seen: list[tuple[str, int]] = []
    jobs = {"text": fails("text", 4), "audio": fails("audio", 0), "vision": fails("vision", 40)}
    for threads in (1, 3):
        seen.clear()
        with pytest.raises(ValueError, match="^text diverged at epoch 4$"):
            run_jobs(jobs, torch.Generator(), threads, lambda m, e, _s: seen.append((m, e)))
        assert [e for m, e in seen if m == "text"] == [1, 2, 3, 4]
        assert len([e for m, e in seen if m == "vision"]) <= (0 if threads == 1 else 1)  # stopped at once


def test_meta_threads_default_and_validation() -> None:
    assert resolve_meta_threads(None) == max(1, min(3, available_cpus()))
    assert resolve_meta_threads(None, modalities=1) == 1
    assert resolve_meta_threads(5) == 5
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="meta_threads: must be a whole number >= 1"):
            resolve_meta_threads(bad)  # type: ignore[arg-type]


def test_runs_are_identical_for_every_meta_threads(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    events: dict[int, list] = {1: [], 3: []}
    runs = {
        t: train(
            ds,
            tmp_path / f"t{t}",
            seed=2,
            hyperparameters=tiny_hp,
            device="cpu",
            meta_threads=t,
            progress=events[t].append,
        )
        for t in (1, 3)
    }
    for name in ("unimodal_labels.csv", "predictions.csv", "model.safetensors"):
        assert (runs[1].out_dir / name).read_bytes() == (runs[3].out_dir / name).read_bytes(), name
    assert runs[1].metrics == runs[3].metrics
    meta = [e.epoch for e in events[3] if e.stage == "meta"]
    assert meta == list(range(1, 3 * tiny_hp["meta_epochs"] + 1))  # one count over the modalities, in order
    assert set(runs[3].config["timings"]) >= {"pretrain_s", "meta_s", "labels_s", "multitask_s"}


def test_cli_thread_settings_errors(small_synth: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = str(tmp_path / "run")
    assert main(["train", str(small_synth), "--out", out, "--meta-threads", "0"]) == 2
    assert "--meta-threads: must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["--threads", "-2", "train", str(small_synth), "--out", out]) == 2
    assert "--threads: must be a whole number >= 1, got -2" in capsys.readouterr().err
    monkeypatch.setenv("UNILABEL_META_THREADS", "two")
    assert main(["train", str(small_synth), "--out", out]) == 2
    assert "UNILABEL_META_THREADS: must be a whole number >= 1, got 'two'" in capsys.readouterr().err
    monkeypatch.delenv("UNILABEL_META_THREADS")
    monkeypatch.setenv("UNILABEL_THREADS", "abc")
    assert main(["train", str(small_synth), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "UNILABEL_THREADS: must be a whole number >= 1, got 'abc'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_threads_is_read_before_or_after_the_command(small_synth: Path, tmp_path: Path, capsys) -> None:
    def threads(argv: list[str]) -> int | None:
        return requested_threads(build_parser().parse_args(argv))

    assert threads(["--threads", "2", "train", "D", "--out", "O"]) == 2
    assert threads(["train", "D", "--out", "O", "--threads", "3"]) == 3
    compare = ["compare", "D", "--strategies", "copy", "--seeds", "1", "--out", "O"]
    assert threads([*compare, "--threads", "4"]) == 4
    assert threads(["train", "D", "--out", "O"]) is None
    assert main(["train", str(small_synth), "--out", str(tmp_path / "run"), "--threads", "-2"]) == 2
    assert "--threads: must be a whole number >= 1, got -2" in capsys.readouterr().err


def test_ctrl_c_stops_a_side_by_side_stage_2_at_once(small_synth: Path, tmp_path: Path) -> None:
    """Ctrl-C while the modalities run side by side stops every one of them at its next epoch and writes
    nothing, instead of leaving the threads to finish stage 2 before the process can exit."""
    err = tmp_path / "stderr.txt"
    hp = ["--set", "pretrain_epochs=1", "--set", "meta_epochs=1000", "--set", "mucn_hidden=16"]
    cmd = [sys.executable, "-m", "models.cli", "train", str(small_synth), "--out", str(tmp_path / "run")]
    cmd += ["--device", "cpu", "--meta-threads", "3", *hp]
    with err.open("wb") as stderr:
        proc = start_at_a_terminal(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while b"\nmeta 1/" not in err.read_bytes():  # stage 2 began (a log gets lines): the threads run
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            rc = proc.wait(timeout=60)
            stopped_after = time.monotonic() - t0
        finally:
            proc.kill()
    assert rc == 130, err.read_text()
    assert "interrupted; nothing was written" in err.read_text()
    assert stopped_after < 5, stopped_after  # 3 x 3000 meta epochs would take minutes
    assert not (tmp_path / "run").exists()


def test_mlc_skip_draws_exactly_what_it_draws() -> None:
    hp = resolve_hyperparameters({"mlc_epochs": 3, "mucn_hidden": 16, "batch_size": 7}, rho=3.0)
    saved, y = _saved()
    s = saved["audio"]
    g = torch.Generator().manual_seed(2)
    head = {
        "0.weight": torch.randn(4, 5, generator=g),
        "0.bias": torch.zeros(4),
        "2.weight": torch.randn(1, 4, generator=g),
        "2.bias": torch.zeros(1),
    }
    ran, skipped = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    mlc_learn_labels(s.unimodal, s.projected, head, y, hp, 3.0, ran)
    MLCDraws(len(y), hp, skipped).skip()
    assert torch.equal(ran.get_state(), skipped.get_state())


def test_mlc_runs_are_identical_for_every_meta_threads(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    hp = {**tiny_hp, "mlc_epochs": 3}
    runs = {
        t: train(
            ds, tmp_path / f"t{t}", strategy="mlc", seed=2, hyperparameters=hp, device="cpu", meta_threads=t
        )
        for t in (1, 3)
    }
    for name in ("unimodal_labels.csv", "predictions.csv", "model.safetensors"):
        assert (runs[1].out_dir / name).read_bytes() == (runs[3].out_dir / name).read_bytes(), name
