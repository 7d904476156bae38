"""Sentiment regression metrics, exactly as thuiar/MMSA (``metricsTop.py``) computes them.

See ``docs/metrics.md`` for the definitions. Two label ranges are supported:

* ``rho == 3`` (CMU-MOSI, CMU-MOSEI; labels in [-3, 3]): Acc7, Acc5, Acc2/F1 "has0" and "non0", MAE, Corr.
* ``rho == 1`` (CH-SIMS, CH-SIMS v2; labels in [-1, 1]): Acc2, Acc3, Acc5, F1, MAE, Corr.

Every value is rounded to 4 places with ``np.round`` (what MMSA's ``round()`` on numpy floats does);
``np.round`` (half to even) is also what turns scores into classes for Acc7 / Acc5.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score

__all__ = ["PRIMARY_METRICS", "sentiment_metrics", "unimodal_label_agreement", "pearson"]

#: Column order for result tables, per label range ``rho``.
PRIMARY_METRICS: dict[float, list[str]] = {
    3.0: ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5", "mae", "corr"],
    1.0: ["acc2", "f1", "acc3", "acc5", "mae", "corr"],
}

# Bin edges for CH-SIMS (MMSA ``__eval_sims_regression``): class i holds edges[i] < x <= edges[i + 1].
_SIMS_BINS_2 = (-1.01, 0.0, 1.01)
_SIMS_BINS_3 = (-1.01, -0.1, 0.1, 1.01)
_SIMS_BINS_5 = (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01)


def _as_pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Flatten both arrays to float64 and validate them (same length, non-empty, finite)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if p.size != t.size:
        raise ValueError(f"length mismatch: {p.size} predictions vs {t.size} labels")
    if p.size == 0:
        raise ValueError("empty input: need at least one prediction/label pair")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"predictions contain NaN or inf ({int(np.sum(~np.isfinite(p)))} values)")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"labels contain NaN or inf ({int(np.sum(~np.isfinite(t)))} values)")
    return p, t


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation as ``np.corrcoef``; 0.0 when either side is constant (corrcoef gives NaN)."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.size < 2 or np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        return 0.0
    r = float(np.corrcoef(x, y)[0, 1])
    return r if math.isfinite(r) else 0.0


def _acc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def _weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn weighted F1 with the truth first (the order matters for the weights)."""
    return float(f1_score(truth, pred, average="weighted", zero_division=0))


def _r4(x: float) -> float:
    """Round to 4 places as MMSA's ``round(np.float64, 4)`` does: ``np.round`` (scale, half to even)."""
    return float(np.round(np.float64(x), 4))


def _bin(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Class index i for edges[i] < x <= edges[i + 1] (values already clipped into the outer edges)."""
    out = np.full(x.shape, -1, dtype=np.int64)
    for i in range(len(edges) - 1):
        out[(x > edges[i]) & (x <= edges[i + 1])] = i
    return out


def _mosi_metrics(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    acc7 = _acc(np.round(np.clip(p, -3.0, 3.0)), np.round(np.clip(t, -3.0, 3.0)))
    acc5 = _acc(np.round(np.clip(p, -2.0, 2.0)), np.round(np.clip(t, -2.0, 2.0)))
    mae = float(np.mean(np.abs(p - t)))
    corr = pearson(p, t)

    t_has0, p_has0 = t >= 0, p >= 0
    acc2_has0 = _acc(p_has0, t_has0)
    f1_has0 = _weighted_f1(t_has0, p_has0)

    keep = t != 0
    if not np.any(keep):
        raise ValueError("non0 metrics are undefined: every label is exactly 0")
    t_non0, p_non0 = t[keep] > 0, p[keep] > 0  # a prediction of exactly 0 counts as negative
    acc2_non0 = _acc(p_non0, t_non0)
    f1_non0 = _weighted_f1(t_non0, p_non0)

    return {
        "acc7": _r4(acc7),
        "acc5": _r4(acc5),
        "acc2_has0": _r4(acc2_has0),
        "f1_has0": _r4(f1_has0),
        "acc2_non0": _r4(acc2_non0),
        "f1_non0": _r4(f1_non0),
        "mae": _r4(mae),
        "corr": _r4(corr),
    }


def _sims_metrics(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    p = np.clip(p, -1.0, 1.0)
    t = np.clip(t, -1.0, 1.0)
    p2, t2 = _bin(p, _SIMS_BINS_2), _bin(t, _SIMS_BINS_2)
    p3, t3 = _bin(p, _SIMS_BINS_3), _bin(t, _SIMS_BINS_3)
    p5, t5 = _bin(p, _SIMS_BINS_5), _bin(t, _SIMS_BINS_5)
    return {
        "acc2": _r4(_acc(p2, t2)),
        "acc3": _r4(_acc(p3, t3)),
        "acc5": _r4(_acc(p5, t5)),
        "f1": _r4(_weighted_f1(t2, p2)),
        "mae": _r4(float(np.mean(np.abs(p - t)))),
        "corr": _r4(pearson(p, t)),
    }


def sentiment_metrics(pred: ArrayLike, true: ArrayLike, rho: float) -> dict[str, float]:
    """MMSA test metrics for predictions ``pred`` against labels ``true`` (both flattened).

    ``rho == 3`` gives keys acc7, acc5, acc2_has0, f1_has0, acc2_non0, f1_non0, mae, corr;
    ``rho == 1`` gives acc2, acc3, acc5, f1, mae, corr. Values are rounded to 4 places.
    Corr is defined as 0.0 when predictions or labels are constant.
    Raises ValueError on a length mismatch, empty input, NaN/inf, or another ``rho``.
    """
    p, t = _as_pair(pred, true)
    if float(rho) == 3.0:
        return _mosi_metrics(p, t)
    if float(rho) == 1.0:
        return _sims_metrics(p, t)
    raise ValueError(f"rho must be 3 (MOSI/MOSEI) or 1 (SIMS), got {rho!r}")


def metrics_in_range(pred: ArrayLike, true: ArrayLike, rho: float) -> dict[str, float]:
    """``sentiment_metrics`` for the label ranges it knows (3, 1); for any other, the range-free ones only
    (MAE and Corr, 4 places), which a run and ``unilabel evaluate`` report alike."""
    if float(rho) in (3.0, 1.0):
        return sentiment_metrics(pred, true, rho)
    p, t = _as_pair(pred, true)
    return {"mae": round(float(np.mean(np.abs(p - t))), 4), "corr": round(pearson(p, t), 4)}


def unimodal_label_agreement(learned: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    """How well learned unimodal labels match reference ones (planted synthetic or human sub-labels).

    Keys: ``corr`` (Pearson, 0.0 if either side is constant), ``mae`` (mean absolute difference) and
    ``sign_agreement`` (share of pairs with the same ``np.sign``: -1, 0 or +1). Rounded to 4 places.
    """
    a, b = _as_pair(learned, truth)
    return {
        "corr": _r4(pearson(a, b)),
        "mae": _r4(float(np.mean(np.abs(a - b)))),
        "sign_agreement": _r4(_acc(np.sign(a), np.sign(b))),
    }
