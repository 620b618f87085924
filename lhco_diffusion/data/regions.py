"""Dijet-mass regions and the sideband splits (DESIGN.md, Data).

With ``data.signal_region = (lo, hi)`` and ``data.sideband = (side_lo, side_hi)`` [GeV]:

    signal region (SR)   lo <= mjj < hi
    sideband (SB)        side_lo <= mjj < side_hi, outside the SR
    other                everything else

so every event is in exactly one region. The sideband background is split at random into
train / test / validation with ``data.sideband_fractions`` (paper: 60 % train+test, 40 % validation).
"""
from __future__ import annotations

import numpy as np

from lhco_diffusion.config import DataConfig
from lhco_diffusion.errors import InputError

SPLITS = ("train", "test", "validation")


def signal_region_mask(mjj: np.ndarray, data_config: DataConfig) -> np.ndarray:
    """(N,) bool: mjj [GeV] inside the signal region."""
    low, high = data_config.signal_region
    mjj = np.asarray(mjj)
    return (mjj >= low) & (mjj < high)


def sideband_mask(mjj: np.ndarray, data_config: DataConfig) -> np.ndarray:
    """(N,) bool: mjj [GeV] inside the sideband window but outside the signal region."""
    low, high = data_config.sideband
    mjj = np.asarray(mjj)
    return (mjj >= low) & (mjj < high) & ~signal_region_mask(mjj, data_config)


def region_counts(mjj: np.ndarray, data_config: DataConfig) -> dict[str, int]:
    """Number of events in each region: ``{"SR": ..., "SB": ..., "other": ...}``."""
    signal_region = int(signal_region_mask(mjj, data_config).sum())
    sideband = int(sideband_mask(mjj, data_config).sum())
    return {"SR": signal_region, "SB": sideband, "other": len(mjj) - signal_region - sideband}


def sideband_splits(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Disjoint random index sets ``{"train", "test", "validation"}`` covering ``range(n)``.

    Sizes follow ``fractions`` (rounded, summing to n); the same ``seed`` gives the same split.
    """
    if n < 1:
        raise InputError("cannot split an empty sideband sample")
    edges = np.rint(np.cumsum(fractions) / np.sum(fractions) * n).astype(int)
    parts = np.split(np.random.default_rng(seed).permutation(n), edges[:-1])
    return {name: np.sort(part) for name, part in zip(SPLITS, parts)}
