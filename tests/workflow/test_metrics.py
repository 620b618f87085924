"""ROC, AUC, SIC, the minimum-background rule and seed bands on hand-made scores."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.workflow import metrics
from lhco_diffusion.errors import InputError

QUANTILES = (0.16, 0.84)


def scored(signal, background):
    """(scores, labels) with signal first."""
    signal, background = np.asarray(signal, float), np.asarray(background, float)
    return np.concatenate([signal, background]), np.r_[np.ones(len(signal)), np.zeros(len(background))]


def ladder(signal):
    """100 background events scored 0, 1, ..., 99 and the given signal scores."""
    return scored(signal, np.arange(100))


@pytest.mark.parametrize("signal, background, expected", [
    ([5, 6], [1, 2], 1.0),
    ([1, 2], [5, 6], 0.0),
    ([1, 3], [0, 2], 0.75),
    ([1, 1], [1, 1], 0.5),
])
def test_auc_counts_signal_background_pairs(signal, background, expected):
    assert metrics.auc(*scored(signal, background)) == pytest.approx(expected)


def test_roc_counts_the_background_events_passing_each_cut():
    curve = metrics.roc(*ladder([99.5, 49.5]))
    # cut just below 49.5 keeps both signal events and the background scores 50..99
    index = np.flatnonzero(curve.tpr == 1.0)[0]
    assert curve.n_background[index] == 50
    assert curve.fpr[index] == pytest.approx(0.5)
    assert curve.sic[index] == pytest.approx(1.0 / np.sqrt(0.5))
    assert np.all(np.diff(curve.tpr) >= 0) and np.all(np.diff(curve.fpr) >= 0)


def test_max_sic_drops_cuts_with_fewer_than_the_minimum_background():
    # 10 signal events above every background event, 10 between background scores 89 and 90
    scores, labels = ladder([1000.0] * 10 + [89.5] * 10)
    # unrestricted: the cut at 99 keeps half the signal and 1 background event: 0.5 / sqrt(0.01)
    assert metrics.max_sic(scores, labels, 1) == pytest.approx(5.0)
    # at least 10: the cut at 89.5 keeps all signal and exactly 10 background events
    assert metrics.max_sic(scores, labels, 10) == pytest.approx(1.0 / np.sqrt(0.10))
    # at least 11: the next cut down, 11 background events
    assert metrics.max_sic(scores, labels, 11) == pytest.approx(1.0 / np.sqrt(0.11))


def test_max_sic_needs_enough_background_in_the_test_set():
    with pytest.raises(InputError, match="too small"):
        metrics.max_sic(*scored([2.0], [1.0] * 5), 10)


def test_fpr_on_an_efficiency_grid_starts_at_the_first_kept_cut():
    scores, labels = ladder([1000.0] * 10 + [89.5] * 10)
    grid = np.array([0.25, 0.5, 0.75, 1.0])
    # with >= 10 background events the tightest kept cut (score >= 90) has TPR 0.5, FPR 0.1
    np.testing.assert_allclose(metrics.fpr_at(metrics.roc(scores, labels), grid, 10), [np.nan, 0.1, 0.1, 0.1])
    # with >= 1: TPR 0.5 is reached with 1 background event; the ten tied signal events make
    # the TPR jump from 0 to 0.5, so no kept cut sits at 0.25
    np.testing.assert_allclose(metrics.fpr_at(metrics.roc(scores, labels), grid, 1), [np.nan, 0.01, 0.1, 0.1])


def test_bands_over_seeds_are_medians_and_quantiles_of_the_seed_curves():
    # seed k: every signal event between background scores 89 - 10k and 90 - 10k -> FPR 0.1 (k + 1)
    fprs = 0.1 * np.arange(1, 6)
    score_sets = [ladder([89.5 - 10 * k] * 20) for k in range(5)]
    curves = metrics.seed_curves(score_sets, 10, QUANTILES, tpr_grid=np.array([0.2, 0.6, 1.0]))
    np.testing.assert_allclose(curves.tpr, [0.2, 0.6, 1.0])
    np.testing.assert_allclose(curves.sic.median, curves.tpr / np.sqrt(0.3))
    sic_per_seed = curves.tpr[None, :] / np.sqrt(fprs[:, None])
    np.testing.assert_allclose(curves.sic.low, np.quantile(sic_per_seed, 0.16, axis=0))
    np.testing.assert_allclose(curves.sic.high, np.quantile(sic_per_seed, 0.84, axis=0))
    np.testing.assert_allclose(curves.rejection.median, 1 / 0.3)
    assert np.all(curves.sic.low < curves.sic.median) and np.all(curves.sic.median < curves.sic.high)


def test_band_of_identical_seeds_has_no_width():
    scores, labels = ladder([1000.0] * 10 + [89.5] * 10)
    curves = metrics.seed_curves([(scores, labels)] * 3, 10, QUANTILES)
    np.testing.assert_array_equal(curves.sic.low, curves.sic.high)
    assert curves.tpr[0] >= 0.5  # tighter cuts keep fewer than 10 background events
    assert np.max(curves.sic.median) == pytest.approx(1.0 / np.sqrt(0.1))


def test_grid_points_missing_in_any_seed_are_left_out():
    tight = ladder([1000.0] * 10 + [89.5] * 10)  # defined from TPR 0.5
    loose = ladder([49.5] * 20)  # defined from TPR 0
    curves = metrics.seed_curves([tight, loose], 10, QUANTILES, tpr_grid=np.array([0.3, 0.5, 1.0]))
    np.testing.assert_allclose(curves.tpr, [0.5, 1.0])


def test_injections_group_by_signal_and_band_the_seeds():
    trainings = [(nsig, seed, *ladder([89.5 - 10 * seed] * 20)) for nsig in (1000, 500) for seed in (2, 0, 1)]
    results = metrics.injections(trainings, 10, QUANTILES)
    assert [r.nsig for r in results] == [500, 1000]
    assert results[0].seeds == (0, 1, 2)
    np.testing.assert_allclose(results[0].max_sic_per_seed, 1 / np.sqrt([0.1, 0.2, 0.3]))
    assert results[0].max_sic.median == pytest.approx(1 / np.sqrt(0.2))
    assert results[0].auc.low < results[0].auc.median < results[0].auc.high
    assert results[0].to_dict()["max_sic"]["median"] == pytest.approx(1 / np.sqrt(0.2))


@pytest.mark.parametrize("scores, labels, message", [
    ([0.1, np.nan], [1, 0], "NaN"),
    ([0.1, 0.2], [1, 1], "both signal"),
    ([0.1, 0.2, 0.3], [1, 0], "labels"),
])
def test_bad_scores_are_refused(scores, labels, message):
    with pytest.raises(InputError, match=message):
        metrics.auc(np.array(scores), np.array(labels))
