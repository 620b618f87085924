"""The mjj values that condition generation: a Gaussian kernel density estimate (scikit-learn).

The KDE is fitted to mjj in TeV (the paper's bandwidth, 0.001, is in TeV) and sampled inside a
region by rejection, so the SR values follow the fitted density restricted to the SR.

    sampler = MjjSampler.fit(sideband_mjj, bandwidth=0.001)
    mjj = sampler.sample(200_000, region=(3300.0, 3700.0), seed=7)   # GeV
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.stats import norm
from sklearn.neighbors import KernelDensity

from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output

GEV_PER_TEV = 1000.0
MIN_ACCEPTANCE = 1.0e-6  # below this the region is effectively outside the fitted density


class MjjSampler:
    """A Gaussian KDE of mjj; ``sample`` returns GeV values inside a requested region."""

    def __init__(self, mjj_tev: np.ndarray, bandwidth: float):
        self.mjj_tev = np.asarray(mjj_tev, np.float64).reshape(-1)
        self.bandwidth = float(bandwidth)
        self._kde = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth).fit(self.mjj_tev[:, None])

    @classmethod
    def fit(cls, mjj: np.ndarray, bandwidth: float) -> "MjjSampler":
        """Fit to mjj values [GeV] with a Gaussian kernel of width ``bandwidth`` [TeV]."""
        mjj = np.asarray(mjj, np.float64).reshape(-1)
        if len(mjj) == 0:
            raise InputError("cannot fit the mjj density to an empty sample")
        if not np.all(np.isfinite(mjj)):
            raise InputError("the mjj values for the density fit contain NaN or infinite values")
        if bandwidth <= 0:
            raise InputError(f"the KDE bandwidth must be positive, not {bandwidth}")
        return cls(mjj / GEV_PER_TEV, bandwidth)

    def acceptance(self, region: tuple[float, float]) -> float:
        """Probability that one KDE draw lands in ``region`` [GeV]."""
        low, high = (edge / GEV_PER_TEV for edge in region)
        upper, lower = ((edge - self.mjj_tev) / self.bandwidth for edge in (high, low))
        return float(np.mean(norm.cdf(upper) - norm.cdf(lower)))

    def sample(self, n: int, region: tuple[float, float], seed: int) -> np.ndarray:
        """(n,) mjj [GeV] drawn from the KDE and kept only inside ``region`` [GeV] (rejection)."""
        low, high = region
        acceptance = self.acceptance(region)
        if not low < high or acceptance < MIN_ACCEPTANCE:
            raise InputError(
                f"the fitted mjj density has almost no probability in {low:g}-{high:g} GeV "
                f"(acceptance {acceptance:.1e}); fit it to data that covers the region"
            )
        rng = np.random.default_rng(seed)
        accepted: list[np.ndarray] = []
        remaining = n
        while remaining > 0:
            draws = min(int(1.2 * remaining / acceptance) + 100, 10_000_000)
            mjj = self._kde.sample(draws, random_state=rng.integers(2**31)).reshape(-1) * GEV_PER_TEV
            inside = mjj[(mjj >= low) & (mjj < high)][:remaining]
            accepted.append(inside)
            remaining -= len(inside)
        return np.concatenate(accepted) if accepted else np.zeros(0)

    def save(self, path: str | os.PathLike) -> None:
        """Store the fitted mjj values [TeV] and the bandwidth as npz (atomically)."""
        with atomic_output(path) as temporary:
            with open(temporary, "wb") as file:
                np.savez(file, mjj_tev=self.mjj_tev, bandwidth=self.bandwidth)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MjjSampler":
        """A sampler saved with ``save``."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"mjj density file {path} does not exist")
        try:
            with np.load(path) as values:
                return cls(values["mjj_tev"], float(values["bandwidth"]))
        except (OSError, ValueError, KeyError):
            raise InputError(f"{path} is not an mjj density file written by MjjSampler.save") from None
