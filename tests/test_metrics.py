"""Hand-computed checks of the MMSA metric definitions (models/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import PRIMARY_METRICS, pearson, sentiment_metrics, unimodal_label_agreement

# --------------------------------------------------------------------------------------------------
# rho = 3 (MOSI / MOSEI): one case that exercises every key.
#   idx     0     1     2     3     4     5     6
#   p     2.5  -0.5   0.0   1.5  -3.6   0.6  -0.2
#   t     2.0  -1.0   1.0   0.0  -2.4   0.5   0.0
MOSI_P = [2.5, -0.5, 0.0, 1.5, -3.6, 0.6, -0.2]
MOSI_T = [2.0, -1.0, 1.0, 0.0, -2.4, 0.5, 0.0]


def test_mosi_all_keys_hand_computed() -> None:
    m = sentiment_metrics(MOSI_P, MOSI_T, rho=3)
    assert set(m) == {"acc7", "acc5", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "mae", "corr"}
    # Acc7: round(clip(p,-3,3)) = [2, -0, 0, 2, -3, 1, -0]   (2.5 -> 2 half-to-even, -3.6 clipped to -3)
    #       round(clip(t,-3,3)) = [2, -1, 1, 0, -2, 0,  0]   (0.5 -> 0 half-to-even)
    #       equal at idx 0 and 6 -> 2/7 = 0.285714 -> 0.2857
    assert m["acc7"] == 0.2857
    # Acc5: round(clip(p,-2,2)) = [2, -0, 0, 2, -2, 1, -0]   (-3.6 clipped to -2)
    #       round(clip(t,-2,2)) = [2, -1, 1, 0, -2, 0,  0]   (-2.4 clipped to -2)
    #       equal at idx 0, 4, 6 -> 3/7 = 0.428571 -> 0.4286
    assert m["acc5"] == 0.4286
    # MAE unclipped: 0.5 + 0.5 + 1.0 + 1.5 + 1.2 + 0.1 + 0.2 = 5.0; 5/7 = 0.714286 -> 0.7143
    # (with p clipped to [-3, 3] it would be 4.4/7 = 0.6286)
    assert m["mae"] == 0.7143
    # has0: t>=0 = [T,F,T,T,F,T,T], p>=0 = [T,F,T,T,F,T,F] -> 6/7 = 0.857143 -> 0.8571
    assert m["acc2_has0"] == 0.8571
    # weighted F1 has0 (truth first):
    #   class T (support 5): TP 4 (idx 0,2,3,5), FP 0, FN 1 (idx 6): P=1, R=0.8, F1 = 1.6/1.8 = 0.888889
    #   class F (support 2): TP 2 (idx 1,4), FP 1 (idx 6), FN 0: P=2/3, R=1, F1 = (4/3)/(5/3) = 0.8
    #   (5 * 0.888889 + 2 * 0.8) / 7 = 6.044444 / 7 = 0.863492 -> 0.8635
    #   (pred-first order would weight 4 / 3: (3.555556 + 2.4) / 7 = 0.8508)
    assert m["f1_has0"] == 0.8635
    # non0: drop idx 3, 6 (t == 0); keep idx 0,1,2,4,5
    #   t>0 = [T,F,T,F,T], p>0 = [T,F,F,F,T]  (p = 0.0 at idx 2 counts as negative) -> 4/5 = 0.8
    assert m["acc2_non0"] == 0.8
    #   class T (support 3): TP 2, FP 0, FN 1: F1 = 4/5 = 0.8; class F (support 2): TP 2, FP 1, FN 0: F1 = 0.8
    #   weighted = 0.8
    assert m["f1_non0"] == 0.8
    # Corr: sum p = 0.3, sum t = 0.1, sum pt = 14.44, sum p^2 = 22.11, sum t^2 = 12.01, n = 7
    #   cov = 14.44 - 0.3*0.1/7 = 14.435714; var_p = 22.11 - 0.09/7 = 22.097143
    #   var_t = 12.01 - 0.01/7 = 12.008571
    #   r = 14.435714 / sqrt(22.097143 * 12.008571) = 14.435714 / 16.289730 = 0.886185 -> 0.8862
    assert m["corr"] == 0.8862


def test_mosi_rounding_half_to_even() -> None:
    # np.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -1.5 -> -2, -2.5 -> -2
    p = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
    t = [0.0, 2.0, 2.0, 0.0, -2.0, -2.0]
    m = sentiment_metrics(p, t, rho=3)
    assert m["acc7"] == 1.0  # half-away-from-zero would match only idx 1 and 4: 2/6
    assert m["acc5"] == 1.0


def test_mosi_prediction_zero_is_negative_in_non0_but_positive_in_has0() -> None:
    # t = [1, -1]; p = [0, -1]. has0: p>=0 = [T, F] == t>=0 -> 1.0. non0: p>0 = [F, F] vs [T, F] -> 0.5
    m = sentiment_metrics([0.0, -1.0], [1.0, -1.0], rho=3)
    assert m["acc2_has0"] == 1.0
    assert m["acc2_non0"] == 0.5
    # non0 weighted F1: class T (support 1): TP 0 -> F1 0; class F (support 1): TP 1, FP 1 -> F1 2/3
    # (1*0 + 1*0.666667) / 2 = 0.333333 -> 0.3333
    assert m["f1_non0"] == 0.3333


def test_mosi_clipping_for_acc_but_not_mae() -> None:
    # p = 5 vs t = 3: clipped to 3 for Acc7 -> 3 == 3; clipped to 2 for Acc5 -> 2 == 2; MAE |5 - 3| = 2
    # p = -4 vs t = -2.6: Acc7 round(-3) = -3 vs round(-2.6) = -3 match; Acc5 -2 vs -2 match; |-4 + 2.6| = 1.4
    m = sentiment_metrics([5.0, -4.0], [3.0, -2.6], rho=3)
    assert m["acc7"] == 1.0
    assert m["acc5"] == 1.0
    assert m["mae"] == 1.7  # (2 + 1.4) / 2
    # p = 2.4, t = 2.6 -> Acc7: round(2.4) = 2 vs round(2.6) = 3 mismatch; Acc5: both clipped to 2, match.
    m2 = sentiment_metrics([2.4], [2.6], rho=3)
    assert m2["acc7"] == 0.0
    assert m2["acc5"] == 1.0


def test_corr_hand_computed_and_constant() -> None:
    # p = [1,2,3], t = [1,3,2]: deviations [-1,0,1] and [-1,1,0]; cov 1, variances 2 and 2 -> 1/2
    assert sentiment_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], rho=3)["corr"] == 0.5
    # a constant prediction has no defined Pearson r; defined as 0.0
    assert sentiment_metrics([0.5, 0.5, 0.5], [1.0, -1.0, 2.0], rho=3)["corr"] == 0.0
    assert sentiment_metrics([0.5, 0.2, -0.5], [0.3, 0.3, 0.3], rho=1)["corr"] == 0.0
    assert pearson([1.0], [2.0]) == 0.0


def test_input_is_flattened() -> None:
    a = sentiment_metrics(np.array(MOSI_P).reshape(-1, 1), np.array(MOSI_T).reshape(1, -1), rho=3)
    assert a == sentiment_metrics(MOSI_P, MOSI_T, rho=3)


# --------------------------------------------------------------------------------------------------
# rho = 1 (SIMS): clip first; bins with the edges -0.7, -0.1, 0.1, 0.7 belonging to the lower bin.
#   idx    0     1     2     3     4     5     6
#   p    -0.1   0.1   0.7  -0.7   0.0   1.5  -2.0     (clipped: 1.5 -> 1, -2 -> -1)
#   t    -0.2   0.15  0.75 -0.05  0.05  0.9  -1.0
SIMS_P = [-0.1, 0.1, 0.7, -0.7, 0.0, 1.5, -2.0]
SIMS_T = [-0.2, 0.15, 0.75, -0.05, 0.05, 0.9, -1.0]


def test_sims_all_keys_hand_computed() -> None:
    m = sentiment_metrics(SIMS_P, SIMS_T, rho=1)
    assert set(m) == {"acc2", "acc3", "acc5", "f1", "mae", "corr"}
    # Acc2 bins (-1.01, 0] -> 0, (0, 1.01] -> 1
    #   p2 = [0,1,1,0,0,1,0], t2 = [0,1,1,0,1,1,0] -> mismatch only idx 4 (p = 0.0 is class 0) -> 6/7 = 0.8571
    assert m["acc2"] == 0.8571
    # Acc3 bins [-1,-0.1] -> 0, (-0.1,0.1] -> 1, (0.1,1] -> 2
    #   p3 = [0,1,2,0,1,2,0]  (-0.1 -> 0, 0.1 -> 1, 0.7 -> 2)
    #   t3 = [0,2,2,1,1,2,0]  -> mismatch idx 1, 3 -> 5/7 = 0.714286 -> 0.7143
    assert m["acc3"] == 0.7143
    # Acc5 bins [-1,-0.7] -> 0, (-0.7,-0.1] -> 1, (-0.1,0.1] -> 2, (0.1,0.7] -> 3, (0.7,1] -> 4
    #   p5 = [1,2,3,0,2,4,0]  (-0.1 -> 1, 0.1 -> 2, 0.7 -> 3, -0.7 -> 0)
    #   t5 = [1,3,4,2,2,4,0]  -> equal at idx 0, 4, 5, 6 -> 4/7 = 0.571429 -> 0.5714
    assert m["acc5"] == 0.5714
    # weighted F1 on Acc2 bins, truth first:
    #   class 1 (support 4): TP 3, FP 0, FN 1: F1 = 6/7; class 0 (support 3): TP 3, FP 1, FN 0: F1 = 6/7
    #   -> 0.857143 -> 0.8571
    assert m["f1"] == 0.8571
    # MAE on clipped values: 0.1 + 0.05 + 0.05 + 0.65 + 0.05 + 0.1 + 0.0 = 1.0 -> 1/7 = 0.142857 -> 0.1429
    # (unclipped it would be 2.5/7 = 0.3571)
    assert m["mae"] == 0.1429
    assert m["corr"] == round(float(np.corrcoef(np.clip(SIMS_P, -1, 1), SIMS_T)[0, 1]), 4)


def test_sims_f1_argument_order() -> None:
    # p = [0.5, 0.2, 0.9, 0.05, -0.5] -> p2 = [1,1,1,1,0]; t = [0.4, 0.3, 1.0, -0.3, -0.6] -> t2 = [1,1,1,0,0]
    #   class 1: TP 3, FP 1, FN 0 -> F1 = 6/7 = 0.857143; class 0: TP 1, FP 0, FN 1 -> F1 = 2/3
    #   truth supports (3, 2): (3 * 6/7 + 2 * 2/3) / 5 = 3.904762 / 5 = 0.780952 -> 0.781
    #   (pred supports (4, 1) would give 4.095238 / 5 = 0.8190)
    m = sentiment_metrics([0.5, 0.2, 0.9, 0.05, -0.5], [0.4, 0.3, 1.0, -0.3, -0.6], rho=1)
    assert m["f1"] == 0.781


def test_sims_corr_on_clipped_values() -> None:
    # p = [-3, 0, 1] clipped -> [-1, 0, 1]; t = [-1, 0.5, 1] (mean 1/6, deviations [-7/6, 2/6, 5/6])
    #   cov = 7/6 + 0 + 5/6 = 2; var_p = 2; var_t = (49 + 4 + 25) / 36 = 78/36
    #   r = 2 / sqrt(2 * 78/36) = 2 / 2.081666 = 0.960769 -> 0.9608
    # unclipped p deviations [-7/3, 2/3, 5/3] are 2x t's -> r would be 1.0 (that is what rho=3 reports)
    assert sentiment_metrics([-3.0, 0.0, 1.0], [-1.0, 0.5, 1.0], rho=1)["corr"] == 0.9608
    assert sentiment_metrics([-3.0, 0.0, 1.0], [-1.0, 0.5, 1.0], rho=3)["corr"] == 1.0


def test_sims_edges_outside_range() -> None:
    # clipped to exactly -1 / 1, which still fall in the outer bins (edges at -1.01 and 1.01)
    m = sentiment_metrics([-5.0, 5.0], [-1.0, 1.0], rho=1)
    assert m["acc2"] == m["acc3"] == m["acc5"] == 1.0
    assert m["mae"] == 0.0


# --------------------------------------------------------------------------------------------------
def test_primary_metrics_cover_keys() -> None:
    assert set(PRIMARY_METRICS[3]) == set(sentiment_metrics(MOSI_P, MOSI_T, rho=3))
    assert set(PRIMARY_METRICS[1]) == set(sentiment_metrics(SIMS_P, SIMS_T, rho=1))


@pytest.mark.parametrize(
    ("pred", "true", "rho", "match"),
    [
        ([1.0, 2.0], [1.0], 3, "length mismatch"),
        ([], [], 3, "empty"),
        ([1.0, math.nan], [1.0, 2.0], 3, "predictions contain NaN"),
        ([1.0, 2.0], [math.nan, 2.0], 1, "labels contain NaN"),
        ([1.0, 2.0], [1.0, 2.0], 2, "rho must be"),
        ([1.0, 2.0], [0.0, 0.0], 3, "every label is exactly 0"),
    ],
)
def test_errors(pred: list[float], true: list[float], rho: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sentiment_metrics(pred, true, rho=rho)


def test_unimodal_label_agreement() -> None:
    # learned = [1, -0.5, 0, 2], truth = [0.5, -1, 0.5, 2]
    #   MAE = (0.5 + 0.5 + 0.5 + 0) / 4 = 0.375
    #   signs [1,-1,0,1] vs [1,-1,1,1] -> 3/4 = 0.75
    #   deviations [0.375,-1.125,-0.625,1.375] and [0,-1.5,0,1.5]: cov 3.75, var 3.6875 and 4.5
    #   r = 3.75 / sqrt(16.59375) = 0.920575 -> 0.9206
    a = unimodal_label_agreement([1.0, -0.5, 0.0, 2.0], [0.5, -1.0, 0.5, 2.0])
    assert a == {"corr": 0.9206, "mae": 0.375, "sign_agreement": 0.75}
    with pytest.raises(ValueError, match="length mismatch"):
        unimodal_label_agreement([1.0], [1.0, 2.0])


def _mmsa_style(p: np.ndarray, t: np.ndarray, rho: int) -> dict[str, float]:
    """Independent, literal transcription of MMSA's metricsTop for cross-checking on random data."""
    from sklearn.metrics import f1_score

    def r4(x: float) -> float:
        return float(round(np.float64(x), 4))

    def mc(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum(np.round(a) == np.round(b)) / float(len(a)))

    if rho == 3:
        nz = t != 0
        return {
            "acc7": r4(mc(np.clip(p, -3, 3), np.clip(t, -3, 3))),
            "acc5": r4(mc(np.clip(p, -2, 2), np.clip(t, -2, 2))),
            "acc2_has0": r4(np.mean((p >= 0) == (t >= 0))),
            "f1_has0": r4(f1_score(t >= 0, p >= 0, average="weighted")),
            "acc2_non0": r4(np.mean((p[nz] > 0) == (t[nz] > 0))),
            "f1_non0": r4(f1_score(t[nz] > 0, p[nz] > 0, average="weighted")),
            "mae": r4(np.mean(np.abs(p - t))),
            "corr": r4(np.corrcoef(p, t)[0][1]),
        }
    p, t = np.clip(p, -1, 1), np.clip(t, -1, 1)
    out = {}
    edges = {2: [-1.01, 0.0, 1.01], 3: [-1.01, -0.1, 0.1, 1.01], 5: [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]}
    for k, ms in edges.items():
        pa, ta = p.copy(), t.copy()
        for i in range(k):
            pa[(p > ms[i]) & (p <= ms[i + 1])] = i
            ta[(t > ms[i]) & (t <= ms[i + 1])] = i
        out[k] = (pa, ta)
    return {
        "acc2": r4(mc(*out[2])),
        "acc3": r4(mc(*out[3])),
        "acc5": r4(mc(*out[5])),
        "f1": r4(f1_score(out[2][1], out[2][0], average="weighted")),
        "mae": r4(np.mean(np.abs(p - t))),
        "corr": r4(np.corrcoef(p, t)[0][1]),
    }


def test_matches_mmsa_transcription_on_random_data() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(3, 40))
        t = np.round(rng.uniform(-3.5, 3.5, n) * 3) / 3  # MOSI-like thirds, some beyond +-3
        t[rng.random(n) < 0.2] = 0.0
        p = np.round(rng.normal(0, 2, n), 1)
        if np.any(t != 0) and np.ptp(p) > 0 and np.ptp(t) > 0:
            assert sentiment_metrics(p, t, rho=3) == _mmsa_style(p, t, 3)
        sp, st = np.round(rng.normal(0, 0.6, n), 1), np.round(rng.uniform(-1.2, 1.2, n), 1)
        if np.ptp(np.clip(sp, -1, 1)) > 0 and np.ptp(np.clip(st, -1, 1)) > 0:
            assert sentiment_metrics(sp, st, rho=1) == _mmsa_style(sp, st, 1)
