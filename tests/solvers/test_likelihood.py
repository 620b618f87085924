"""lhco_diffusion.solvers.likelihood against Gaussians whose v-prediction and density are exact.

The absolute floor of the ODE likelihood here is ~3e-4 nat per event: the N(0, I) prior at
t = 1 ignores alpha_1 mu = 4.5e-5 mu; the tolerances below sit above it.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion.solvers import likelihood
from test_sampling import CLOUD, NARROW, Gaussian, point_cloud_mask

RELATIVE = 1.0e-3  # per event, relative to max(|log p|, 1 nat)


def assert_log_density(log_p: np.ndarray, exact: np.ndarray) -> None:
    error = np.abs(log_p - exact) / np.maximum(np.abs(exact), 1.0)
    assert error.max() < RELATIVE, f"worst relative error {error.max():.1e}"


class Rotated:
    """x = rotation @ y with y ~ ``gaussian`` (diagonal): a correlated Gaussian; a v_fn (batch, d)."""

    def __init__(self, gaussian: Gaussian, rotation: np.ndarray):
        self.gaussian = gaussian
        self.rotation = rotation.astype(np.float32)

    def __call__(self, x, t):
        return tf.matmul(self.gaussian(tf.matmul(x, self.rotation), t), self.rotation, transpose_b=True)

    def draw(self, n, seed):
        return self.gaussian.draw((n, len(self.rotation)), seed) @ self.rotation.T

    def log_density(self, x):
        return self.gaussian.log_density(x @ self.rotation)

    def divergence_integral(self) -> np.ndarray:
        """M = integral_0^1 d(dx/dt)/dx dt = -log(covariance)/2, the same for every trajectory."""
        return self.rotation @ np.diag(-np.log(self.gaussian.width.astype(np.float64))) @ self.rotation.T


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def test_exact_divergence_gives_the_gaussian_log_density():
    x = NARROW.draw((200, 8), seed=21)
    assert_log_density(likelihood.log_likelihood(NARROW, x, exact=True), NARROW.log_density(x))


def test_conditioning_goes_through_args():
    x = NARROW.draw((30, 8), seed=33)
    shift = np.random.default_rng(34).standard_normal((30, 8)).astype(np.float32)
    log_p = likelihood.log_likelihood(NARROW, x + shift, exact=False, args=(tf.constant(shift),))
    assert_log_density(log_p, NARROW.log_density(x))


def test_default_tolerances_are_the_configured_ones():
    from lhco_diffusion.config import LikelihoodConfig

    settings = LikelihoodConfig()
    x = NARROW.draw((20, 8), seed=22)
    np.testing.assert_array_equal(
        likelihood.log_likelihood(NARROW, x),
        likelihood.log_likelihood(NARROW, x, atol=settings.atol, rtol=settings.rtol),
    )


def test_correlated_gaussian_with_exact_divergence():
    gaussian = Rotated(Gaussian(mu=[0.5, -0.3, 1.0], width=[0.1, 0.4, 1.0]), _rotation(3, seed=23))
    x = gaussian.draw(100, seed=24)
    assert_log_density(likelihood.log_likelihood(gaussian, x, exact=True), gaussian.log_density(x))


def test_hutchinson_is_unbiased_with_the_predicted_spread():
    """With a fixed probe z per event the estimate's error is sum_{i != j} z_i z_j M_ij:
    mean 0 and standard deviation sqrt(2 sum_{i != j} M_ij^2)."""
    gaussian = Rotated(Gaussian(mu=[0.5, -0.3, 1.0], width=[0.1, 0.4, 1.0]), _rotation(3, seed=23))
    x = gaussian.draw(400, seed=25)
    error = likelihood.log_likelihood(gaussian, x, exact=False, seed=3) - gaussian.log_density(x)
    off_diagonal = gaussian.divergence_integral() - np.diag(np.diag(gaussian.divergence_integral()))
    spread = np.sqrt(2.0 * np.sum(off_diagonal**2))
    assert spread > 0.3  # the test has teeth: the probe noise is large
    assert abs(error.mean()) < 4.0 * spread / np.sqrt(len(x))
    assert 0.8 < error.std() / spread < 1.2


def test_hutchinson_is_exact_for_a_diagonal_jacobian_and_reproducible():
    """Rademacher probes have z_i^2 = 1, so an elementwise v_fn has no probe noise."""
    x = NARROW.draw((50, 8), seed=26)
    first = likelihood.log_likelihood(NARROW, x, exact=False, seed=5)
    assert_log_density(first, NARROW.log_density(x))
    np.testing.assert_array_equal(first, likelihood.log_likelihood(NARROW, x, exact=False, seed=5))


@pytest.mark.parametrize("exact", [True, False])
def test_masked_entries_are_not_dimensions(exact):
    mask = point_cloud_mask(40, slots=5, seed=27)
    x = CLOUD.draw((40, 5, 3), seed=28)
    log_p = likelihood.log_likelihood(CLOUD, x * mask, mask=mask, exact=exact)
    assert_log_density(log_p, CLOUD.log_density(x, mask))
    garbage = np.where(mask == 0, 7.0, x).astype(np.float32)  # whatever sits in the padding
    np.testing.assert_allclose(likelihood.log_likelihood(CLOUD, garbage, mask=mask, exact=exact), log_p,
                               atol=1e-9)


def test_padding_slots_do_not_change_log_p():
    """The same real particles in 3 slots or with 3 extra padded slots: the same log p."""
    x = CLOUD.draw((30, 3, 3), seed=29)
    padded = np.concatenate([x, np.zeros_like(x)], axis=1)
    mask = np.concatenate([np.ones((30, 3, 1)), np.zeros((30, 3, 1))], axis=1).astype(np.float32)
    np.testing.assert_allclose(likelihood.log_likelihood(CLOUD, padded, mask=mask),
                               likelihood.log_likelihood(CLOUD, x), atol=2e-4)


def test_permuting_a_point_cloud_leaves_log_p_unchanged():
    mask = point_cloud_mask(30, slots=6, seed=30)
    x = CLOUD.draw((30, 6, 3), seed=31) * mask
    order = np.random.default_rng(32).permutation(6)
    log_p = likelihood.log_likelihood(CLOUD, x, mask=mask)
    permuted = likelihood.log_likelihood(CLOUD, x[:, order], mask=mask[:, order])
    np.testing.assert_allclose(permuted, log_p, atol=2e-4)


def test_anomaly_score_is_eq_7_of_the_density_paper():
    log_p_jets = np.array([-3.0, 1.0])
    log_p_particles = np.array([[-40.0, -10.0], [20.0, 6.0]])
    n_constituents = np.array([[20, 5], [10, 3]])
    np.testing.assert_allclose(likelihood.anomaly_score(log_p_jets, log_p_particles, n_constituents),
                               [-(-3.0 - 2.0 - 2.0), -(1.0 + 2.0 + 2.0)])


def test_anomaly_score_refuses_bad_shapes_and_empty_jets():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        likelihood.anomaly_score(np.zeros(3), np.zeros((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="n_constituents"):
        likelihood.anomaly_score(np.zeros(2), np.zeros((2, 2)), np.array([[1, 0], [2, 2]]))


def test_a_mask_without_the_feature_axis_is_refused():
    with pytest.raises(ValueError, match=r"\(batch, ..., 1\)"):
        likelihood.log_likelihood(CLOUD, np.zeros((4, 3, 3), np.float32), mask=np.ones((4, 3), np.float32))
