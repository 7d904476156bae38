"""A run directory handed over by someone else, damaged or forged: model.json and model.safetensors that are
not what train() writes are errors naming the file and the field (exit 2 on the CLI), before the network
is built, with nothing unpickled."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.cli import main
from models.label_report import build_report
from models.pipeline import train
from models.trained_model import TrainedModel

HP = {"pretrain_epochs": 1, "meta_epochs": 1, "multitask_max_epochs": 1, "audio_dim": 8, "vision_dim": 8,
      "text_dim": 8, "fusion_dim": 8, "predictor_hidden": 8}


@pytest.fixture(scope="module")
def run(small_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "run"
    train(small_synth, out, strategy="copy", seed=1, hyperparameters=HP, device="cpu")
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _edit_model_json(run: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    info = json.loads((run / "model.json").read_text())
    edit(info)
    (run / "model.json").write_text(json.dumps(info))


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(info: dict[str, Any]) -> None:
        for key in path[:-1]:
            info = info[key]
        info[path[-1]] = value

    return edit


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(info: dict[str, Any]) -> None:
        for key in path[:-1]:
            info = info[key]
        del info[path[-1]]

    return edit


MODEL_JSON_CASES = {
    "no rho": (_drop("rho"), "rho: missing"),
    "no net_spec": (_drop("net_spec"), "net_spec: missing"),
    "no fusion_dim": (_drop("net_spec", "fusion_dim"), "net_spec.fusion_dim: missing"),
    "modalities a list": (_set("net_spec", "modalities", value=[1]), "net_spec.modalities: must be"),
    "unknown key": (_set("net_spec", "foo", value=1), "net_spec.foo: unknown key"),
    "in_dim a string": (_set("net_spec", "modalities", "audio", "in_dim", value="16"), "audio.in_dim"),
    "negative width": (_set("net_spec", "modalities", "text", "out_dim", value=-5), "text.out_dim"),
    "zero fusion": (_set("net_spec", "fusion_dim", value=0), "net_spec.fusion_dim"),
    # 10^9 x 8 floats: torch tried to allocate 32 GB and failed with a RuntimeError traceback
    "enormous width": (_set("net_spec", "predictor_hidden", value=10**9), "net_spec.predictor_hidden"),
    "unknown text_source": (_set("text_source", value="telepathy"), "text_source: must be one of"),
    "unknown kind": (_set("net_spec", "modalities", "text", "kind", value="cnn"), "text.kind"),
    "transformer without finetune": (
        _set("net_spec", "modalities", "text", "kind", value="transformer"),
        "text.kind",
    ),
    "rho zero": (_set("rho", value=0), "rho: the label range"),
    "rho negative": (_set("rho", value=-3), "rho: the label range"),
    "heads a string": (_set("unimodal_heads_trained", value="no"), "unimodal_heads_trained"),
    "dropout a string": (_set("net_spec", "dropout", value="x"), "net_spec.dropout"),
    "text_model a number": (_set("net_spec", "text_model", value=5), "net_spec.text_model"),
    "empty object": (lambda info: info.clear(), "text_source: missing"),
}


@pytest.mark.parametrize("case", list(MODEL_JSON_CASES))
def test_a_forged_model_json_is_named_not_a_traceback(run: Path, tmp_path: Path, case: str) -> None:
    edit, said = MODEL_JSON_CASES[case]
    copy = _copy(run, tmp_path)
    _edit_model_json(copy, edit)
    with pytest.raises(ValueError, match="model.json") as err:
        TrainedModel.load(copy)
    assert said in str(err.value)


def test_model_json_nan_and_invalid_json(run: Path, tmp_path: Path) -> None:
    copy = _copy(run, tmp_path)
    text = (copy / "model.json").read_text()
    (copy / "model.json").write_text(text.replace('"rho": 3.0', '"rho": NaN'))
    with pytest.raises(ValueError, match="rho: the label range must be a positive number, got nan"):
        TrainedModel.load(copy)
    (copy / "model.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        TrainedModel.load(copy)


def test_cli_predict_with_a_forged_model_json_exits_2(
    run: Path, small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(run, tmp_path)
    _edit_model_json(copy, _drop("net_spec", "modalities"))
    assert main(["predict", str(copy), str(small_synth), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "model.json: net_spec.modalities: missing" in err and "Traceback" not in err


def _edit_weights(run: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = load_file(str(run / "model.safetensors"))
    edit(state)
    save_file(state, str(run / "model.safetensors"))


class _Evil:
    """Unpickling it would write a file: proof that nothing was unpickled is that the file is not there."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled"))


def _big_header(path: Path) -> None:
    header = json.dumps({"__metadata__": {"pad": "x" * (20 * 1024**2)}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


WEIGHT_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated?"),
    "empty": (lambda p: p.write_bytes(b""), "not a safetensors file"),
    "text": (lambda p: p.write_bytes(b"hello world" * 50), "not a safetensors file"),
    "huge header": (_big_header, "its header declares"),
    "missing tensor": (
        lambda p: _edit_weights(p.parent, lambda s: s.pop("fusion.1.weight")),
        "missing fusion.1.weight",
    ),
    "extra tensor": (
        lambda p: _edit_weights(p.parent, lambda s: s.__setitem__("evil", torch.zeros(3))),
        "not in the network evil",
    ),
    "wrong shape": (
        lambda p: _edit_weights(p.parent, lambda s: s.__setitem__("fusion.1.weight", torch.zeros(5, 5))),
        "tensor 'fusion.1.weight': shape [5, 5]",
    ),
    # an int64 copy was cast back to float by load_state_dict: weights truncated to whole numbers, no word
    "integer dtype": (
        lambda p: _edit_weights(p.parent, lambda s: s.update({k: s[k].long() for k in ["fusion.1.weight"]})),
        "dtype I64, expected F32",
    ),
    "nan weights": (
        lambda p: _edit_weights(p.parent, lambda s: s["fusion.1.weight"].fill_(float("nan"))),
        "NaN or infinite",
    ),
}


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_damaged_weights_are_named(run: Path, tmp_path: Path, case: str) -> None:
    damage, said = WEIGHT_CASES[case]
    copy = _copy(run, tmp_path)
    damage(copy / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors") as err:
        TrainedModel.load(copy)
    assert said in str(err.value)


def test_a_pickle_renamed_safetensors_is_refused_unread(run: Path, tmp_path: Path) -> None:
    copy = _copy(run, tmp_path)
    marker = tmp_path / "unpickled.txt"
    torch.save({"x": _Evil(marker)}, str(copy / "model.safetensors"))
    with pytest.raises(ValueError, match="pickled checkpoint, not safetensors; it is never unpickled"):
        TrainedModel.load(copy)
    (copy / "model.safetensors").write_bytes(pickle.dumps(_Evil(marker)))  # a bare pickle too
    with pytest.raises(ValueError, match="never unpickled"):
        TrainedModel.load(copy)
    assert not marker.exists()


def test_a_header_whose_length_begins_like_a_pickle_is_read(tmp_path: Path) -> None:
    """The first 8 bytes are the header's length: 128 (0x80 ...) was refused as a pickle, and a header's
    length is a multiple of 8, so about one real file in 32 would have been."""
    import struct

    import torch
    from safetensors.torch import save_file

    from models.run_weights import read_header

    path = tmp_path / "w.safetensors"
    for pad in range(300):
        save_file({"a": torch.zeros(3)}, str(path), metadata={"x": "y" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] & 0xFF == 0x80
    assert read_header(path) == {"a": ("F32", (3,))}


def test_an_enormous_input_width_is_refused_before_allocating(run: Path, tmp_path: Path) -> None:
    """in_dim has no bound of its own (features may be wide); a forged one of 10^11 made torch allocate
    10^11 x 8 floats (a RuntimeError traceback, or the memory itself): now the weights' header, which a file
    cannot forge without holding those bytes, refuses it first."""
    copy = _copy(run, tmp_path)
    _edit_model_json(copy, _set("net_spec", "modalities", "audio", "in_dim", value=10**11))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'encoders.audio.net.1.weight': shape"):
        TrainedModel.load(copy)


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


REPORT_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    # each was an AttributeError or TypeError traceback, or a message naming no file
    "dataset a string": (
        lambda r: _edit_json(r / "config.json", _set("dataset", value="x")),
        "config.json: dataset: must be a JSON object, got str",
    ),
    "summary a list": (
        lambda r: _edit_json(r / "config.json", _set("dataset", "summary", value=[1])),
        "config.json: dataset.summary: must be a JSON object, got list",
    ),
    "rho a word": (
        lambda r: _edit_json(r / "config.json", _set("dataset", "summary", "rho", value="abc")),
        "config.json: dataset.summary.rho: the label range must be a positive number, got 'abc'",
    ),
    "rho zero": (
        lambda r: _edit_json(r / "config.json", _set("dataset", "summary", "rho", value=0)),
        "dataset.summary.rho: the label range must be a positive number, got 0",
    ),
    "modalities a number": (
        lambda r: _edit_json(r / "config.json", _set("hyperparameters", "modalities", value=5)),
        "config.json: hyperparameters.modalities: must be a list, got int",
    ),
    "path a number": (
        lambda r: _edit_json(r / "config.json", _set("dataset", "path", value=5)),
        "config.json: dataset.path: must be a string or null, got 5",
    ),
    "diagnostics a string": (
        lambda r: _edit_json(r / "config.json", _set("strategy_diagnostics", value="x")),
        "config.json: strategy_diagnostics: must be a JSON object, got str",
    ),
    "heads a list": (
        lambda r: _edit_json(r / "metrics.json", _set("unimodal_heads_vs_label", value=[1])),
        "metrics.json: unimodal_heads_vs_label: must be a JSON object, got list",
    ),
    "history value a word": (
        lambda r: (r / "history.csv").write_text("stage,epoch,modality,name,value\npretrain,1,,L_M,abc\n"),
        "history.csv: column 'value': row 0 holds 'abc', not a number",
    ),
    "history epoch a word": (
        lambda r: (r / "history.csv").write_text("stage,epoch,modality,name,value\npretrain,x,,L_M,1\n"),
        "history.csv: column 'epoch': row 0 holds 'x', not a number",
    ),
    "label a word": (
        lambda r: (r / "unimodal_labels.csv").write_text("id,label,label_T,label_A,label_V\na,1,x,1,1\n"),
        "unimodal_labels.csv: column 'label_T': row 0 holds 'x', not a number",
    ),
}


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_names_a_damaged_run_file(run: Path, tmp_path: Path, case: str) -> None:
    damage, said = REPORT_CASES[case]
    copy = _copy(run, tmp_path)
    damage(copy)
    with pytest.raises(ValueError) as err:
        build_report(copy, figures=False)
    assert said in str(err.value)


def test_cli_report_of_a_damaged_config_exits_2(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(run, tmp_path)
    _edit_json(copy / "config.json", _set("dataset", value="x"))
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "config.json: dataset: must be a JSON object" in err and "Traceback" not in err


GOOD_RESULTS = {
    "split": "valid",
    "seeds": [1, 2],
    "rho": 3.0,
    "results": {"copy": [{"mae": 0.7, "corr": 0.5}, {"mae": 0.8, "corr": 0.4}]},
}


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ({"results": [1, 2]}, "results: an object of strategy -> runs, got [1, 2]"),
        ({"seeds": "1"}, "seeds: a list of whole numbers, got '1'"),
        ({"results": {"copy": 5}}, "results.copy: a run's metrics for each of the 2 seeds, got 5"),
        ({"results": {"copy": [{"mae": "x"}, {"mae": 1}]}}, "results.copy[0]: an object of metric -> number"),
        ({"rho": "3"}, "rho: a number, got '3'"),
    ],
)
def test_table_names_what_a_damaged_results_json_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture, edit: dict, said: str
) -> None:
    """An AttributeError or TypeError traceback (exit 1) before."""
    (tmp_path / "results.json").write_text(json.dumps({**GOOD_RESULTS, **edit}))
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"results.json: {said}" in err and "Traceback" not in err
    (tmp_path / "results.json").write_text(json.dumps(GOOD_RESULTS))
    assert main(["table", str(tmp_path)]) == 0


@pytest.mark.parametrize("config", [[], {"dataset": "x"}, {}, {"dataset": {"summary": {"rho": "x"}}}])
def test_compare_does_not_reuse_a_folder_whose_config_is_not_a_runs(tmp_path: Path, config: Any) -> None:
    """A TypeError or KeyError traceback before; now a folder holding something else, as an unreadable one."""
    from models.compare import _earlier_run

    folder = tmp_path / "copy" / "seed1"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text("{}")
    assert _earlier_run(folder, "sha", "copy", 1, None, None) == (None, "content (not a finished run)")


def test_evaluate_names_a_model_json_whose_rho_is_not_a_number(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy = _copy(run, tmp_path)
    _edit_model_json(copy, _set("rho", value="x"))
    ids = pd.read_csv(copy / "predictions.csv", dtype=str)["id"][:2]
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{i},0.5\n" for i in ids))
    assert main(["evaluate", str(copy), "--labels", str(tmp_path / "labels.csv")]) == 2
    err = capsys.readouterr().err
    assert "model.json: rho: the label range must be a positive number, got 'x'" in err, err
