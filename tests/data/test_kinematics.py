"""Dijet mass and the rescaling that makes generated jets meet their mjj condition exactly."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.data.kinematics import dijet_mass, four_vectors, pt_eta_phi_mass, scaled_to_dijet_mass


def _jets(n: int, seed: int = 0) -> np.ndarray:
    """(n, 2, 5) [pT, eta, phi, mass, N] of roughly back-to-back jets [GeV]."""
    rng = np.random.default_rng(seed)
    pt = rng.uniform(800.0, 2000.0, (n, 2))
    eta = rng.normal(0.0, 1.0, (n, 2))
    phi = np.stack([np.zeros(n), np.pi + rng.normal(0.0, 0.2, n)], axis=1)
    mass = rng.uniform(20.0, 500.0, (n, 2))
    count = rng.integers(1, 31, (n, 2)).astype(float)
    return np.stack([pt, eta, phi, mass, count], axis=-1)


def test_the_dijet_mass_of_massless_jets_is_the_textbook_formula():
    jets = _jets(50)
    jets[..., 3] = 0.0
    pt, eta, phi = jets[..., 0], jets[..., 1], jets[..., 2]
    expected = np.sqrt(2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1]) - np.cos(phi[:, 0] - phi[:, 1])))
    np.testing.assert_allclose(dijet_mass(jets), expected, rtol=1e-10)


def test_back_to_back_central_jets_have_twice_their_energy_as_dijet_mass():
    # back to back at eta = 0 with pT 1000 GeV and mass 100 GeV: mjj = 2 * sqrt(1000^2 + 100^2)
    jets = np.array([[[1000.0, 0.0, 0.0, 100.0, 5], [1000.0, 0.0, np.pi, 100.0, 7]]])
    np.testing.assert_allclose(dijet_mass(jets), [2 * np.hypot(1000.0, 100.0)], rtol=1e-12)


def test_the_dijet_mass_of_massive_jets_is_that_of_their_summed_four_vectors():
    jets = _jets(100, seed=4)
    summed = four_vectors(*np.moveaxis(jets[..., :4], -1, 0)).sum(axis=1)
    np.testing.assert_allclose(dijet_mass(jets), pt_eta_phi_mass(summed)[:, 3], rtol=1e-10)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_scaled_jets_have_the_requested_dijet_mass_with_directions_and_counts_kept(dtype, rtol):
    jets = _jets(200, seed=1).astype(dtype)
    mjj = dijet_mass(jets) * np.random.default_rng(2).normal(1.0, 0.03, 200)
    scaled = scaled_to_dijet_mass(jets, mjj)
    assert scaled.dtype == dtype and scaled.shape == jets.shape
    np.testing.assert_allclose(dijet_mass(scaled), mjj, rtol=rtol)
    np.testing.assert_array_equal(scaled[..., [1, 2, 4]], jets[..., [1, 2, 4]])
    factor = scaled[..., [0, 3]] / jets[..., [0, 3]]  # one factor per event for both jets' pT and mass
    np.testing.assert_allclose(factor, np.broadcast_to(factor[:, :1, :1], factor.shape), rtol=rtol)
    np.testing.assert_allclose(factor[:, 0, 0], mjj / dijet_mass(jets), rtol=rtol)


def test_jets_that_already_have_their_mjj_are_left_unchanged():
    jets = _jets(30, seed=3)
    np.testing.assert_allclose(scaled_to_dijet_mass(jets, dijet_mass(jets)), jets, rtol=1e-12)
