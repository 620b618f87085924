"""ROC, AUC and significance improvement (SIC) of anomaly scores, and their spread over seeds.

For a cut ``score >= threshold`` on a test set of signal (label 1) and background (label 0):

    TPR = signal efficiency,  FPR = background efficiency,  SIC = TPR / sqrt(FPR)

A cut that leaves fewer than ``min_background_events`` test-background events is dropped
(its FPR, and so its SIC, is too poorly known); the paper uses 10. Curves of several
classifier trainings (seeds) are compared on a common grid of signal efficiencies: at each
grid point a seed contributes the cut with the smallest FPR that keeps at least that TPR, and
the median and the ``quantiles`` (68 % band: 0.16, 0.84) are taken over the seeds.
scikit-learn computes the curves.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from lhco_diffusion.errors import InputError


@dataclasses.dataclass(frozen=True)
class Roc:
    """A ROC curve, one entry per distinct cut, ordered by increasing TPR (and FPR).

    tpr, fpr (K,) efficiencies; n_background (K,) int: test-background events passing the cut.
    """

    tpr: np.ndarray
    fpr: np.ndarray
    n_background: np.ndarray

    def kept(self, min_background_events: int) -> "Roc":
        """The cuts leaving at least ``min_background_events`` (and at least one) background events."""
        keep = self.n_background >= max(min_background_events, 1)
        return Roc(self.tpr[keep], self.fpr[keep], self.n_background[keep])

    @property
    def sic(self) -> np.ndarray:
        """(K,) TPR / sqrt(FPR); NaN where no background event passes (use ``kept`` first)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.fpr > 0, self.tpr / np.sqrt(self.fpr), np.nan)


@dataclasses.dataclass(frozen=True)
class Band:
    """Median and lower/upper quantiles over seeds, on a grid (or a single value: shape ())."""

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def to_dict(self) -> dict:
        return {"median": _plain(self.median), "low": _plain(self.low), "high": _plain(self.high)}


def roc(scores: np.ndarray, labels: np.ndarray) -> Roc:
    """The ROC curve of ``scores`` (N,) for truth ``labels`` (N,) (1 signal, 0 background)."""
    scores, labels = _checked(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    n_background = np.rint(fpr * np.sum(labels == 0)).astype(np.int64)
    return Roc(tpr, fpr, n_background)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a signal event outscores a background one."""
    scores, labels = _checked(scores, labels)
    return float(roc_auc_score(labels, scores))


def max_sic(scores: np.ndarray, labels: np.ndarray, min_background_events: int) -> float:
    """The largest SIC over the cuts that keep at least ``min_background_events`` background events."""
    curve = roc(scores, labels).kept(min_background_events)
    if len(curve.tpr) == 0:
        raise InputError(f"no cut keeps {min_background_events} test-background events; "
                         "the test set is too small")
    return float(np.max(curve.sic))


def efficiency_grid(n_points: int = 1000) -> np.ndarray:
    """Signal efficiencies 1/n_points, 2/n_points, ..., 1."""
    return np.arange(1, n_points + 1) / n_points


def fpr_at(curve: Roc, tpr_grid: np.ndarray, min_background_events: int) -> np.ndarray:
    """(G,) the smallest FPR of a cut with TPR >= each grid value; NaN where that cut is dropped."""
    kept = curve.kept(min_background_events)
    result = np.full(len(tpr_grid), np.nan)
    if len(kept.tpr) == 0:
        return result
    index = np.searchsorted(kept.tpr, tpr_grid, side="left")
    reachable = index < len(kept.tpr)
    result[reachable] = kept.fpr[index[reachable]]
    # a cut passing fewer background events is dropped: the curve starts at the first kept cut
    result[tpr_grid < kept.tpr[0]] = np.nan
    return result


def band(values: np.ndarray, quantiles: tuple[float, float]) -> Band:
    """Median and ``quantiles`` over axis 0 (seeds) of values (S, ...) or (S,)."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        raise InputError("cannot form a band from zero seeds")
    low, high = np.quantile(values, quantiles, axis=0)
    return Band(np.median(values, axis=0), low, high)


@dataclasses.dataclass(frozen=True)
class SeedCurves:
    """SIC and ROC bands of several seeds on a common signal-efficiency grid.

    tpr (G,): grid points where every seed has a kept cut; sic, rejection (1 / FPR): Bands on it.
    """

    tpr: np.ndarray
    sic: Band
    rejection: Band


def seed_curves(score_sets: list[tuple[np.ndarray, np.ndarray]], min_background_events: int,
                quantiles: tuple[float, float], tpr_grid: np.ndarray | None = None) -> SeedCurves:
    """Bands of SIC and background rejection over seeds; ``score_sets`` = [(scores, labels), ...]."""
    grid = efficiency_grid() if tpr_grid is None else np.asarray(tpr_grid, np.float64)
    fpr = np.stack([fpr_at(roc(scores, labels), grid, min_background_events)
                    for scores, labels in score_sets])
    defined = np.all(np.isfinite(fpr), axis=0)
    grid, fpr = grid[defined], fpr[:, defined]
    return SeedCurves(grid, band(grid / np.sqrt(fpr), quantiles), band(1.0 / fpr, quantiles))


def _checked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels).reshape(-1)
    if len(scores) != len(labels):
        raise InputError(f"{len(scores)} scores but {len(labels)} labels")
    if not np.all(np.isfinite(scores)):
        raise InputError("the scores contain NaN or infinite values")
    if not (np.any(labels == 1) and np.any(labels == 0)):
        raise InputError("a ROC curve needs both signal (label 1) and background (label 0) test events")
    return scores, labels


def _plain(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


@dataclasses.dataclass(frozen=True)
class Injection:
    """Everything the evaluation reports for one injected signal: bands over its seeds."""

    nsig: int
    seeds: tuple[int, ...]
    curves: SeedCurves
    auc: Band
    max_sic: Band
    auc_per_seed: tuple[float, ...]
    max_sic_per_seed: tuple[float, ...]

    def to_dict(self) -> dict:
        """JSON-ready numbers (the curves are left to the figures)."""
        return {"nsig": self.nsig, "seeds": list(self.seeds), "auc": self.auc.to_dict(),
                "max_sic": self.max_sic.to_dict(), "auc_per_seed": list(self.auc_per_seed),
                "max_sic_per_seed": list(self.max_sic_per_seed)}


def injections(trainings: list[tuple[int, int, np.ndarray, np.ndarray]], min_background_events: int,
               quantiles: tuple[float, float]) -> list[Injection]:
    """Group trainings ``[(nsig, seed, scores, labels), ...]`` by nsig and form their bands."""
    results = []
    for nsig in sorted({training[0] for training in trainings}):
        runs = sorted(((seed, scores, labels) for n, seed, scores, labels in trainings if n == nsig),
                      key=lambda run: run[0])
        score_sets = [(scores, labels) for _, scores, labels in runs]
        aucs = [auc(scores, labels) for scores, labels in score_sets]
        sics = [max_sic(scores, labels, min_background_events) for scores, labels in score_sets]
        results.append(Injection(
            nsig=nsig, seeds=tuple(seed for seed, _, _ in runs),
            curves=seed_curves(score_sets, min_background_events, quantiles),
            auc=band(aucs, quantiles), max_sic=band(sics, quantiles),
            auc_per_seed=tuple(aucs), max_sic_per_seed=tuple(sics),
        ))
    return results
