"""The bench scripts' inputs: malformed options and paths end with one line naming the option, before any
work; what they measure or reuse is what they say (bench_train's per-child peak, mug_crossfit's recorded
folds); the API launcher removes the metrics folder it made."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(capsys: pytest.CaptureFixture, main, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("bench_predict", ["--sizes", "1,x"], "argument --sizes: '1,x': expected whole numbers >= 1"),
        ("bench_predict", ["--sizes", "0"], "argument --sizes: '0': expected whole numbers >= 1"),
        ("bench_train", ["--threads", "1,x"], "argument --threads: '1,x': expected whole numbers >= 1"),
        ("bench_train", ["--meta-threads", "0"], "argument --meta-threads: '0': expected whole numbers >= 1"),
        ("bench_train", ["--text-source", "feature"], "--text-source: 'feature': expected a comma list"),
        ("bench_service", ["--json", "/no/such/dir/out.json"], "--json: no such directory: /no/such/dir"),
        ("bench_load", ["--json", "/no/such/dir/out.json"], "--json: no such directory: /no/such/dir"),
    ],
)
def test_malformed_options_are_refused_with_one_line(
    capsys, name: str, argv: list[str], message: str
) -> None:
    assert message in refused(capsys, script(name).main, argv)


def test_bench_train_peak_is_each_childs_own() -> None:
    """A light child after a heavy one reports its own peak (RUSAGE_CHILDREN would give the heavy one's). The
    children start from a small interpreter: exec keeps the forking process's peak as the child's floor."""
    measure = f"""
import importlib.util, json, subprocess, sys
spec = importlib.util.spec_from_file_location("bench_train", {str(BENCH / "bench_train.py")!r})
bench_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_train)
heavy = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
peaks = [bench_train.wait_measured(subprocess.Popen([sys.executable, "-c", c])) for c in (heavy, "pass")]
print(json.dumps(peaks))
"""
    done = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (heavy_status, heavy), (light_status, light) = json.loads(done.stdout)
    assert heavy_status == light_status == 0
    assert heavy > 300 and light < 150, (heavy, light)


def fake_run(path: Path, meta: dict | None) -> Path:
    path.mkdir(parents=True)
    diagnostics = {"meta": meta} if meta is not None else {}
    (path / "config.json").write_text(json.dumps({"strategy_diagnostics": diagnostics}))
    heads = {m: {"corr": 0.25} for m in meta or {}}
    (path / "metrics.json").write_text(json.dumps({"unimodal_heads_vs_label": {"valid": heads}}))
    return path


def test_mucn_diagnostics_inputs(tmp_path: Path, capsys) -> None:
    diag = script("mucn_diagnostics")
    values = dict.fromkeys(diag.KEYS, 0.5)
    compare = tmp_path / "compare"
    for seed in (1, 2):
        fake_run(compare / "mug" / f"seed{seed}", {"text": values, "audio": values})
        fake_run(compare / "copy" / f"seed{seed}", None)
    diag.main([str(compare)])  # a `unilabel compare` folder: its mug/ runs only
    out = capsys.readouterr().out
    assert f"{compare} (2 runs)" in out and "| text | 0.500 |" in out
    with pytest.raises(SystemExit, match=r"seed1: not a MUG run \(no stage-2 diagnostics\)$"):
        diag.main([str(compare / "copy")])
    with pytest.raises(SystemExit, match=r"nothing: no such directory$"):
        diag.main([str(tmp_path / "nothing")])


def test_mug_crossfit_refuses_a_run_made_otherwise(tmp_path: Path, capsys) -> None:
    crossfit = script("mug_crossfit")
    record = {"folds": 5, "dataset_sha256": "abc"}
    run = fake_run(tmp_path / "seed1", {})
    with pytest.raises(SystemExit, match="without a readable crossfit.json"):
        crossfit.reusable(run, record)
    (run / crossfit.RECORD).write_text(json.dumps({**record, "folds": 3}))
    with pytest.raises(SystemExit, match=r"trained with folds 3 \(now 5\)"):
        crossfit.reusable(run, record)
    (run / crossfit.RECORD).write_text(json.dumps(record))
    assert crossfit.reusable(run, record)
    assert not crossfit.reusable(tmp_path / "seed2", record)  # not trained yet

    def main_with(*argv: str) -> str:
        return refused(capsys, crossfit.main, list(argv))

    out = ["--out", str(tmp_path / "out")]
    assert "--compare: no such directory" in main_with(
        str(tmp_path), "--seeds", "1", "--compare", "/nope", *out
    )
    assert "argument --seeds: '1,x'" in main_with(
        str(tmp_path), "--seeds", "1,x", "--compare", str(tmp_path), *out
    )
    assert "data: no such file or directory: /nope" in main_with(
        "/nope", "--seeds", "1", "--compare", str(tmp_path), *out
    )


def test_api_launcher_removes_only_the_metrics_folder_it_made(tmp_path: Path, monkeypatch) -> None:
    import uvicorn

    from service import serve

    seen = []

    def run(*args, **kwargs) -> None:
        seen.append(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # what main sets is undone after the test
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert serve.main(["--workers", "2"]) == 0
    assert seen[0].parent == tmp_path and not seen[0].exists()
    given = tmp_path / "given"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert serve.main(["--workers", "2"]) == 0
    assert given.is_dir()  # the operator's: left in place
