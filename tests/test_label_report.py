"""The label report (models/label_report/) and the history.csv it plots, on tiny synthetic runs."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from models.cli import main
from models.compare import compare
from models.dataset_loader import load_dataset
from models.label_report import build_compare_report, build_report, write_compare_report, write_report
from models.label_report import compare as compare_module
from models.label_report import figures as figures_module
from models.run_dir import RUN_FILES
from tests.conftest import TINY, train_recording

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(small_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """mug (every modality), copy, none, and mug on text and audio only; each with its progress events."""
    root = tmp_path_factory.mktemp("runs")
    ds = load_dataset(small_synth)
    out = {}
    for name, strategy, extra in [
        ("mug", "mug", {}),
        ("copy", "copy", {}),
        ("none", "none", {}),
        ("subset", "mug", {"modalities": "text,audio"}),
    ]:
        result, events = train_recording(ds, root / name, strategy, {**TINY, **extra})
        out[name] = (result.out_dir, events)
    return out


@pytest.fixture(scope="module")
def mug_page(runs: dict) -> Path:
    return write_report(runs["mug"][0])


def _history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv", dtype={"modality": str}, keep_default_na=False)


def test_history_csv_records_every_event(runs: dict) -> None:
    run, events = runs["mug"]
    assert "history.csv" in RUN_FILES and (run / "history.csv").is_file()
    h = _history(run)
    assert list(h.columns) == ["stage", "epoch", "modality", "name", "value"]
    assert list(dict.fromkeys(h["stage"])) == ["pretrain", "meta", "multitask"]
    # MUG's meta losses come per modality (split from "L_pre_all[text]"), epochs 1..meta_epochs for each
    meta = h[h["stage"] == "meta"]
    assert list(dict.fromkeys(meta["modality"])) == ["text", "audio", "vision"]
    for m in ("text", "audio", "vision"):
        rows = meta[(meta["modality"] == m) & (meta["name"] == "L_pre_all")]
        assert rows["epoch"].tolist() == list(range(1, TINY["meta_epochs"] + 1))
        sent = [e.losses[f"L_pre_all[{m}]"] for e in events if f"L_pre_all[{m}]" in e.losses]
        assert rows["value"].tolist() == pytest.approx(sent)  # the caller's callback saw the same events
    assert (h.loc[h["stage"] != "meta", "modality"] == "").all()
    multitask = h[(h["stage"] == "multitask") & (h["name"] == "valid_mae")]
    config = json.loads((run / "config.json").read_text())
    assert multitask["epoch"].tolist() == list(range(1, config["stage3"]["epochs_run"] + 1))
    sent = [e.metrics["valid_mae"] for e in events if e.stage == "multitask"]
    assert multitask["value"].tolist() == pytest.approx(sent)
    pre = h[h["stage"] == "pretrain"]
    assert {"L_M", "L_text'", "Lc_text"} <= set(pre["name"]) and pre["epoch"].max() == TINY["pretrain_epochs"]
    assert set(_history(runs["none"][0])["stage"]) == {"multitask"}


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(b) for b in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_report_page_is_self_contained(runs: dict, mug_page: Path, small_synth: Path) -> None:
    run = runs["mug"][0]
    assert mug_page == run / "report" / "report.html"
    page = mug_page.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page  # phones: 1:1
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(u.startswith(("data:image/png;base64,", "#")) for u in links)
    images = _images(page)
    written = sorted(p.name for p in mug_page.parent.glob("*.png"))
    assert len(images) == len(written) >= 6 and all(img.startswith(PNG) for img in images)
    assert "labels_vs_multimodal.png" in written and "mucn.png" in written
    for name in written:  # the PNGs beside the page are the ones embedded in it
        assert (mug_page.parent / name).read_bytes() in images
    # report.json is the plotted data, strict JSON (no NaN), without the server's dataset path
    text = (mug_page.parent / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"report.json holds {c}"))
    assert data == build_report(run, figures=False).data
    assert str(small_synth) not in text and str(small_synth) not in page
    assert data["labels"]["modalities"] == ["text", "audio", "vision"]
    assert len(data["labels"]["per_modality"]["text"]["scatter"]["y"]) == 160


def _drawn(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[Figure]:
    """The matplotlib Figures ``module`` turns into PNGs from now on (to look at what was plotted)."""
    figures = []
    real = module.to_png

    def keep(fig: Figure) -> bytes:
        figures.append(fig)
        return real(fig)

    monkeypatch.setattr(module, "to_png", keep)
    return figures


def _figure(figures: list[Figure], title: str) -> Figure:
    return next(f for f in figures if f.get_suptitle().startswith(title))


def test_disagreement_table_lists_each_modalitys_largest_shifts(
    runs: dict, mug_page: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per modality, not over all of them: before, text's shifts filled the table and every panel of the
    scatter ringed rows that were not its own modality's largest shifts."""
    run = runs["mug"][0]
    labels = pd.read_csv(run / "unimodal_labels.csv", dtype={"id": str})
    drawn = _drawn(monkeypatch, figures_module)
    report = build_report(run)
    dis = report.data["disagreements"]
    rows = dis["rows"]
    assert [r["modality"] for r in rows] == ["text"] * 5 + ["audio"] * 5 + ["vision"] * 5
    assert dis["rows_per_modality"] == 5
    scatter = _figure(drawn, "Learned unimodal labels against the multimodal label")
    section = mug_page.read_text().split('id="disagreements"')[1].split("<h2")[0]
    for ax, m, x in zip(scatter.axes, ("text", "audio", "vision"), "TAV", strict=True):
        shift = (labels[f"label_{x}"] - labels["label"]).to_numpy()
        order = np.argsort(-np.abs(shift), kind="stable")[:5]
        expected = labels["id"].to_numpy()[order].tolist()
        mine = [r for r in rows if r["modality"] == m]
        assert [r["id"] for r in mine] == expected
        assert [r["shift"] for r in mine] == pytest.approx(shift[order], abs=1e-4)
        table = section.split(f'id="disagreements-{m}"')[1].split("</table>")[0]
        assert re.findall(r"<tr><td>(syn\d+)</td>", table) == expected
        assert f"<th>label_{x} - y</th>" in table and f"{shift[order[0]]:+.3f}" in table
        # the panel rings its own modality's rows, and no other's
        (rings,) = [c for c in ax.collections if c.get_label().startswith("its ")]
        at = labels.set_index("id").loc[expected, ["label", f"label_{x}"]].to_numpy()
        assert np.asarray(rings.get_offsets()) == pytest.approx(at, abs=1e-4)
    assert "has no transcripts" in section  # the synthetic dataset has none: ids only, and said so
    assert "<th>transcript</th>" not in section and "<th>y</th>" in section  # no column for what is not there
    # each row keeps its largest shift over the modalities, as report.json's rows carried it before
    by_id = labels.set_index("id")
    largest = [by_id.loc[r["id"], ["label_T", "label_A", "label_V"]].sub(r["y"]).abs().max() for r in rows]
    assert [r["max_abs_shift"] for r in rows] == pytest.approx(largest, abs=1e-4)


def test_mucn_curves_begin_where_the_title_says_and_both_batch_losses_show(
    runs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, each panel's title gave the loss before epoch 1 while its curve began at epoch 1, and L_pre lay
    hidden under L_post (no markers)."""
    drawn = _drawn(monkeypatch, figures_module)
    report = build_report(runs["mug"][0])
    mucn = _figure(drawn, "MUCN by meta epoch")
    for ax, m in zip(mucn.axes, ("text", "audio", "vision"), strict=True):
        d = report.data["mucn"][m]
        assert ax.get_title() == f"{m}: denoising {d['L_pre_all_start']:.3f} -> {d['L_pre_all_end']:.3f}"
        lines = {line.get_label(): line for line in ax.get_lines()}
        curve = lines["L_pre_all"]
        assert list(curve.get_xdata()) == list(range(TINY["meta_epochs"] + 1))  # epoch 0: before training
        assert curve.get_ydata()[0] == pytest.approx(d["L_pre_all_start"])
        assert curve.get_ydata()[-1] == pytest.approx(d["L_pre_all_end"])
        pre, post = lines["L_pre"], lines["L_post"]
        assert "None" not in (pre.get_marker(), post.get_marker()) and pre.get_marker() != post.get_marker()
        assert pre.get_zorder() > curve.get_zorder() and post.get_zorder() > curve.get_zorder()
    assert "meta epoch (0: before training)" == mucn.axes[0].get_xlabel()


def test_sub_label_legend_shows_every_modalitys_colour(runs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The learned bars are coloured by modality; before, their legend entry took text's blue alone."""
    drawn = _drawn(monkeypatch, figures_module)
    build_report(runs["mug"][0])
    (fig,) = [f for f in drawn if f.axes[0].get_title().startswith("Agreement with the dataset's sub-labels")]
    (legend,) = fig.legends
    keys = [to_hex(r.get_facecolor()) for r in legend.findobj(Rectangle)]
    assert keys == [*(figures_module.COLORS[m] for m in ("text", "audio", "vision")), to_hex("0.7")]
    said = [t.get_text() for t in legend.get_texts()]
    assert said == ["learned labels (the modality's colour)", "copies of y"]


def test_transcripts_come_from_the_dataset(runs: dict, small_synth: Path, tmp_path: Path) -> None:
    run = runs["mug"][0]
    data = tmp_path / "with-text"
    shutil.copytree(small_synth, data)
    utt = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    utt["transcript"] = "said <b>" + utt["id"] + "</b>"
    utt.to_csv(data / "utterances.csv", index=False)
    report = build_report(run, dataset_dir=data, figures=False)
    rows = report.data["disagreements"]["rows"]
    assert rows and all(r["transcript"] == f"said <b>{r['id']}</b>" for r in rows)
    page = report.html()
    assert f"said &lt;b&gt;{rows[0]['id']}&lt;/b&gt;" in page and "<b>" not in page  # escaped
    assert "<th>transcript</th>" in page
    assert "not the dataset the run was trained on" in page  # another sha256: matched by id, and said so
    # the dataset recorded in config.json has gone: ids only, said so; a --data that is not there: an error
    moved = tmp_path / "moved"
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("report"))
    config = json.loads((moved / "config.json").read_text())
    config["dataset"]["path"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    page = build_report(moved, figures=False).html()
    assert "is no longer there (unilabel report RUN --data DATASET reads them from a copy" in page
    with pytest.raises(FileNotFoundError, match="data: .* does not exist"):
        build_report(moved, dataset_dir=tmp_path / "gone")


def test_mucn_diagnostics_for_mug_and_none_for_copy(runs: dict, mug_page: Path) -> None:
    page = mug_page.read_text()
    section = page.split('id="mucn"')[1]
    meta = json.loads((runs["mug"][0] / "config.json").read_text())["strategy_diagnostics"]["meta"]
    for m in ("text", "audio", "vision"):
        d = meta[m]
        assert f"<td>{m}</td>" in section
        for key in ("L_pre_all_start", "L_pre_all_end", "noisy_input_mae", "label_shift_mae"):
            assert f"{d[key]:.3f}" in section
    assert "denoising loss, start" in section and "mucn.png" in section
    assert "<th></th>" not in section.split("</table>")[0]  # every column says what it holds
    copy = build_report(runs["copy"][0])
    page = copy.html()
    assert "No MUCN diagnostics: the copy strategy does not meta-learn its labels" in page
    assert "mucn.png" not in copy.figures and not copy.data["mucn"]
    assert "equal the multimodal label (copies)" in page  # copies: shifts of 0
    assert "No disagreements: every learned label equals the multimodal label." in page


def test_a_none_run_and_a_modality_subset_render(runs: dict) -> None:
    none = build_report(runs["none"][0])
    page = none.html()
    assert "learned no unimodal labels (strategy none" in page
    assert set(none.figures) == {"training_curves.png"} and all(i.startswith(PNG) for i in _images(page))
    assert "No unimodal heads were trained in this run." in page
    assert "The dataset has sub-labels, but this run learned no labels" in page
    subset = build_report(runs["subset"][0])
    data = subset.data
    assert data["run"]["modalities"] == ["text", "audio"] and data["labels"]["modalities"] == [
        "text",
        "audio",
    ]
    assert set(data["mucn"]) == {"text", "audio"} and set(data["heads"]["valid"]) == {"text", "audio"}
    rows = data["disagreements"]["rows"]
    assert rows and all(r["label_V"] is None and r["label_T"] is not None for r in rows)
    page = subset.html()
    assert "Left out of this run: vision (its label columns are blank)." in page
    assert {"labels_vs_multimodal.png", "mucn.png", "heads_valid.png"} <= set(subset.figures)


def test_an_older_run_without_history_or_sub_labels(runs: dict, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(runs["mug"][0], old, ignore=shutil.ignore_patterns("report", "history.csv"))
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["unimodal_labels_vs_sub_labels"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    config = json.loads((old / "config.json").read_text())
    config["dataset"]["summary"]["sub_labels"] = []
    (old / "config.json").write_text(json.dumps(config))
    report = build_report(old)
    page = report.html()
    assert "Training curves are not recorded in this run" in page
    assert "The losses by meta epoch are not recorded in this run" in page and "denoising loss, start" in page
    assert "The dataset has no reference sub-labels (label_T/A/V)" in page
    assert not {"training_curves.png", "mucn.png", "sub_labels.png"} & set(report.figures)


def _results(tmp_path: Path, strategies: tuple[str, ...], seeds: list[int]) -> Path:
    """A comparison's results.json with known per-seed numbers (no training)."""
    rng = np.random.default_rng(0)
    names = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5", "mae", "corr"]
    results = {
        s: [{m: round(float(rng.uniform(0.4, 0.9)), 4) for m in names} for _ in seeds] for s in strategies
    }
    out = tmp_path / "cmp"
    out.mkdir(parents=True)
    summary = {"dataset": "synth", "rho": 3.0, "split": "valid", "seeds": seeds, "results": results}
    (out / "results.json").write_text(json.dumps(summary))
    return out


def test_compare_report(tmp_path: Path) -> None:
    out = _results(tmp_path, ("mug", "copy", "none"), [1111, 1112, 1113])
    page_path = write_compare_report(out)
    assert page_path == out / "report.html"
    page = page_path.read_text()
    assert "http://" not in page and "https://" not in page
    images = _images(page)
    assert len(images) == 2 and all(i.startswith(PNG) for i in images)
    assert {"compare_metrics.png", "compare_paired.png", "report.json"} <= {p.name for p in out.iterdir()}
    assert "<td>mug - copy</td>" in page and "<td>mug - none</td>" in page  # the paired table, as HTML
    results = json.loads((out / "results.json").read_text())["results"]
    report = build_compare_report(out)
    for name, png in report.figures.items():  # the same input, the same bytes
        assert (out / name).read_bytes() == png
    diffs = report.data["paired"]["others"]["copy"]["mae"]["diffs"]
    expected = [a["mae"] - b["mae"] for a, b in zip(results["mug"], results["copy"], strict=True)]
    assert diffs == pytest.approx(expected, abs=1e-5)
    assert report.data["by_strategy"]["none"]["corr"]["std"] == pytest.approx(
        np.std([r["corr"] for r in results["none"]], ddof=1), abs=1e-5
    )
    paired = build_compare_report(out, reference="none", figures=False).data["paired"]
    assert paired["reference"] == "none" and set(paired["others"]) == {"mug", "copy"}
    one = _results(tmp_path / "one", ("mug",), [1])
    single = build_compare_report(one)
    assert set(single.figures) == {"compare_metrics.png"} and "No paired differences" in single.html()


def test_compare_axes_name_their_metric_and_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the y-axes said only "x100" for Acc/F1 and nothing for MAE and Corr."""
    drawn = _drawn(monkeypatch, compare_module)
    build_compare_report(_results(tmp_path, ("mug", "copy"), [1, 2]))
    metrics, paired = _figure(drawn, "valid split by strategy"), _figure(drawn, "Paired by seed")
    assert [ax.get_ylabel() for ax in metrics.axes] == [
        "Acc2 (has0) (%)",
        "F1 (has0) (%)",
        "Acc2 (non0) (%)",
        "F1 (non0) (%)",
        "Acc7 (%)",
        "Acc5 (%)",
        "MAE (label units)",
        "Corr (Pearson r)",
    ]
    said = [ax.get_ylabel() for ax in paired.axes]
    assert said[4] == "Δ Acc7 (% points)" and said[6:] == ["Δ MAE (label units)", "Δ Corr (Pearson r)"]


def test_compare_says_n_a_for_an_undefined_value_in_table_and_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed's Corr stored as NaN in results.json: before, the table said "nan" while the figure dropped the
    point unsaid (and the paired figure stopped the report with a TypeError)."""
    out = _results(tmp_path, ("mug", "copy"), [1, 2, 3])
    summary = json.loads((out / "results.json").read_text())
    summary["results"]["copy"][1]["corr"] = float("nan")
    (out / "results.json").write_text(json.dumps(summary))
    drawn = _drawn(monkeypatch, compare_module)
    report = build_compare_report(out)
    above, tables = report.html().split('id="tables"')
    assert re.search(r"<td>copy</td>(<td[^>]*>[^<]*</td>){8}<td class=\"num\">n/a</td>", tables)
    assert re.search(r"<td>mug - copy</td>(<td[^>]*>[^<]*</td>){8}<td class=\"num\">n/a</td>", tables)
    assert "nan" not in tables.lower()
    assert "n/a: a metric the seeds lack or one of them could not compute (NaN in results.json)." in above
    for title in ("valid split by strategy", "Paired by seed"):
        corr = _figure(drawn, title).axes[-1]
        assert [t.get_text() for t in corr.texts] == ["n/a\n(seed 2)"], title
    assert all(not ax.texts for ax in _figure(drawn, "valid split by strategy").axes[:-1])


def test_compare_writes_its_page(small_synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    compare(
        small_synth, ["copy"], [1], out, hyperparameters={**TINY, "multitask_max_epochs": 2}, progress=False
    )
    page = (out / "report.html").read_text()
    assert "Comparison on" in page and "compare_metrics.png" in page


def test_cli_report(runs: dict, tmp_path: Path, capsys) -> None:
    run = runs["copy"][0]
    assert main(["report", str(run), "--out", str(tmp_path / "page")]) == 0
    assert f"report written to {tmp_path / 'page' / 'report.html'}" in capsys.readouterr().out
    assert (tmp_path / "page" / "labels_vs_multimodal.png").read_bytes().startswith(PNG)
    cmp = _results(tmp_path, ("mug", "copy"), [1, 2])
    assert main(["report", str(cmp)]) == 0  # a comparison's folder gets the comparison's page
    assert f"report written to {cmp / 'report.html'}" in capsys.readouterr().out
    assert "mug minus each other strategy" in (cmp / "report.html").read_text()
    assert main(["report", str(cmp), "--reference", "copy"]) == 0  # paired as `unilabel table --reference`
    assert "copy minus each other strategy" in (cmp / "report.html").read_text()
    assert main(["report", str(run), "--reference", "copy"]) == 2
    assert "--reference: a run's page pairs nothing" in capsys.readouterr().err


def test_cli_report_errors_are_named(runs: dict, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(runs["copy"][0], broken)
    (broken / "config.json").write_text("{not json")
    for args, problem in [
        ([str(tmp_path / "nowhere")], "does not exist; give the --out folder of `unilabel train`"),
        ([str(tmp_path / "empty")], "is not a finished run directory (no config.json, metrics.json"),
        ([str(broken)], "config.json: not valid JSON"),
        ([str(runs["copy"][0]), "--data", str(tmp_path / "gone")], "data: "),
    ]:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("unilabel report: error:") and problem in err and "Traceback" not in err


def _edited_copy(run: Path, to: Path, config: dict | None = None, metrics: dict | None = None) -> Path:
    """A copy of ``run`` (without its report) whose config.json / metrics.json have the given top-level keys
    replaced."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("report"))
    for name, changes in (("config.json", config), ("metrics.json", metrics)):
        if changes:
            content = json.loads((to / name).read_text())
            content.update(changes)
            (to / name).write_text(json.dumps(content))
    return to


def test_mucn_that_did_not_improve_is_not_said_to_denoise(runs: dict, tmp_path: Path) -> None:
    """An untrained MUCN (meta_epochs=0, or one that learned nothing) already sits a little below the noisy
    input's error; the verdict also needs the loss to end below where it started."""
    run = runs["mug"][0]
    diagnostics = json.loads((run / "config.json").read_text())["strategy_diagnostics"]
    meta = diagnostics["meta"]
    meta["text"].update(L_pre_all_start=1.0, L_pre_all_end=1.0, noisy_input_mae=1.01)  # did not move
    meta["audio"].update(L_pre_all_start=1.0, L_pre_all_end=0.8, noisy_input_mae=1.01)  # learned
    meta["vision"].update(L_pre_all_start=1.0, L_pre_all_end=1.1, noisy_input_mae=1.01)  # worse
    edited = _edited_copy(run, tmp_path / "run", config={"strategy_diagnostics": diagnostics})
    section = build_report(edited, figures=False).html().split('id="mucn"')[1]
    rows = {m: section.split(f"<td>{m}</td>")[1].split("</tr>")[0] for m in ("text", "audio", "vision")}
    assert "no lower than at the start: not learned" in rows["text"] and "denoises" not in rows["text"]
    assert "below the noisy input and its start: denoises" in rows["audio"]
    assert "not below the noisy input" in rows["vision"] and "denoises" not in rows["vision"]


def test_only_mug_has_a_mucn_section_and_each_strategy_is_described_rightly(
    runs: dict, tmp_path: Path
) -> None:
    copy = build_report(runs["copy"][0], figures=False).html()
    assert 'id="mucn"' not in copy and 'href="#mucn"' not in copy  # no MUCN section for a strategy without
    assert 'href="#diagnostics"' in copy  # the line saying why sits in the strategy diagnostics section
    assert "No MUCN diagnostics: the copy strategy does not meta-learn its labels" in copy
    # MLC meta-learns its labels (with its own network): the page must not say it does not
    mlc_record = {"mlc": {"text": {"mean_abs_change": 0.05, "final": {"L_main": 0.3, "L_meta": 0.2}}}}
    mlc = _edited_copy(
        runs["copy"][0], tmp_path / "mlc", config={"strategy": "mlc", "strategy_diagnostics": mlc_record}
    )
    page = build_report(mlc, figures=False).html()
    assert "mlc meta-learns its labels with MLC's own label-correction network".replace("'", "&#x27;") in page
    assert "does not meta-learn" not in page and 'id="mucn"' not in page
    # a MUG run whose config.json lost MUCN's record: said so, not that MUG does not meta-learn
    mug = _edited_copy(runs["mug"][0], tmp_path / "mug", config={"strategy_diagnostics": {}})
    page = build_report(mug, figures=False).html()
    assert 'id="mucn"' in page and "config.json records none (strategy_diagnostics.meta)" in page
    assert "does not meta-learn" not in page


def test_blank_and_undefined_values_render_as_missing(runs: dict, tmp_path: Path) -> None:
    """Numbers a run could not compute (NaN in metrics.json, blanks in unimodal_labels.csv) show as missing;
    before, each of these stopped the report with a KeyError, TypeError or ValueError."""
    run = runs["mug"][0]
    metrics = json.loads((run / "metrics.json").read_text())
    heads = metrics["unimodal_heads_vs_label"]
    heads["valid"]["audio"] = None  # a head whose numbers were not computed
    heads["valid"]["text"] = {"mae": 0.5}  # r and sign agreement missing
    heads["valid"]["vision"]["corr"] = float("nan")
    sub = metrics["unimodal_labels_vs_sub_labels"]
    sub["text"] = None
    valid = metrics["valid"]
    valid["corr"] = float("nan")  # the model's predictions constant on valid: r undefined
    edited = _edited_copy(
        run,
        tmp_path / "run",
        metrics={"unimodal_heads_vs_label": heads, "unimodal_labels_vs_sub_labels": sub, "valid": valid},
    )
    labels = pd.read_csv(edited / "unimodal_labels.csv", dtype={"id": str})
    labels.loc[0, "label_T"] = np.inf  # not a number to plot
    labels["label_V"] = np.nan
    labels.loc[1, "label_V"] = 0.5
    labels.loc[1, "label"] = np.nan  # vision's only value has no y to compare with
    labels.to_csv(edited / "unimodal_labels.csv", index=False)
    report = build_report(edited)
    assert {"heads_valid.png", "sub_labels.png", "labels_vs_multimodal.png"} <= set(report.figures)
    assert report.data["labels"]["modalities"] == ["text", "audio"]  # no pair of numbers for vision
    assert report.data["labels"]["per_modality"]["text"]["n"] == 158  # the inf row and the blank y left out
    page = report.html()
    heads_table = page.split('id="heads"')[1].split("</table>")[0]
    assert "<td>valid</td><td>audio</td>" + '<td class="num">n/a</td>' * 3 in heads_table
    assert '<td>valid</td><td>text</td><td class="num">n/a</td><td class="num">0.500</td>' in heads_table
    sub_table = page.split('id="sub-labels"')[1].split("</table>")[0]
    assert "<td>text</td>" + '<td class="num">n/a</td>' * 4 in sub_table
    metrics_table = page.split('id="metrics"')[1].split("</table>")[0]
    valid_row = metrics_table.split("<td>valid</td>")[1].split("</tr>")[0]
    assert valid_row.endswith('<td class="num">n/a</td>')  # Corr, the last column: not an empty cell
    json.dumps(report.data, allow_nan=False)  # strict JSON still


@pytest.mark.parametrize(
    ("results", "said"),
    [
        ({"copy": 5}, "results.copy: a run's metrics for each of the 2 seeds"),
        (
            {"copy": [{"mae": "x", "corr": 0.5}, {"mae": 0.8, "corr": 0.4}]},
            "results.copy[0]: an object of metric",
        ),
    ],
)
def test_cli_report_names_what_a_damaged_results_json_holds(tmp_path: Path, capsys, results, said) -> None:
    """As `unilabel table` names it; before, a TypeError traceback or an unnamed 'could not convert'."""
    summary = {"split": "valid", "seeds": [1, 2], "rho": 3.0, "results": results}
    (tmp_path / "results.json").write_text(json.dumps(summary))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"results.json: {said}" in err and "Traceback" not in err


def test_strategy_diagnostics_keep_modalities_in_the_modality_column(runs: dict, tmp_path: Path) -> None:
    """cmc's and mtcl's records mix run-wide numbers and groups with per-modality ones; before, "cmc" or
    "final" stood in the modality column and a list showed as Python's repr."""
    record = {
        "cmc": {
            "centres": [-1.24591, 0.0, 1.24174],
            "final": {"CE_text": 0.2612},
            "text": {"class_changed_share": 0.0},
        }
    }
    run = _edited_copy(
        runs["copy"][0], tmp_path / "cmc", config={"strategy": "cmc", "strategy_diagnostics": record}
    )
    table = build_report(run, figures=False).html().split("<h3>cmc</h3>")[1].split("</table>")[0]
    assert '<td>all</td><td>centres</td><td class="num">-1.2459, 0.0000, 1.2417</td>' in table
    assert '<td>all</td><td>final.CE_text</td><td class="num">0.2612</td>' in table
    assert '<td>text</td><td>class_changed_share</td><td class="num">0.0000</td>' in table


def test_the_page_states_the_label_range_and_units(runs: dict, tmp_path: Path) -> None:
    page = build_report(runs["mug"][0], figures=False).html()
    assert "labels in [-3, 3]" in page.split("<nav>")[0]  # the subtitle: MOSI's range
    config = json.loads((runs["copy"][0] / "config.json").read_text())
    config["dataset"]["summary"]["rho"] = 1.0  # as SIMS
    sims = _edited_copy(
        runs["copy"][0], tmp_path / "sims", config={"dataset": config["dataset"], "stage3": None}
    )
    page = build_report(sims, figures=False).html()
    assert "labels in [-1, 1]" in page.split("<nav>")[0]
    metrics = page.split('id="metrics"')[1].split('id="labels"')[0]
    assert "Acc/F1 x100; MAE in label units." in metrics  # said without a stage-3 record too
