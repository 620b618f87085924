"""Four-vector helpers shared by the clustering, the toy generator, generation and the tests (numpy,
float64)."""
from __future__ import annotations

import numpy as np


def four_vectors(pt, eta, phi, mass=0.0) -> np.ndarray:
    """(..., 4) [px, py, pz, E] [GeV] from pT [GeV], pseudorapidity eta, phi and mass [GeV]."""
    pt, eta, phi, mass = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (pt, eta, phi, mass)))
    pz = pt * np.sinh(eta)
    energy = np.sqrt(pt**2 + pz**2 + mass**2)
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pz, energy], axis=-1)


def pt_eta_phi_mass(momenta: np.ndarray) -> np.ndarray:
    """(..., 4) [pT, eta, phi, mass] of (..., 4) [px, py, pz, E]; phi in (-pi, pi], mass >= 0."""
    px, py, pz, energy = np.moveaxis(np.asarray(momenta, np.float64), -1, 0)
    pt = np.hypot(px, py)
    mass_squared = energy**2 - px**2 - py**2 - pz**2
    return np.stack(
        [pt, np.arcsinh(pz / pt), np.arctan2(py, px), np.sqrt(np.maximum(mass_squared, 0.0))], axis=-1
    )


def wrap_phi(phi):
    """Angles wrapped into [-pi, pi)."""
    return np.mod(np.asarray(phi) + np.pi, 2 * np.pi) - np.pi


def dijet_mass_squared(pt, eta, phi, mass) -> np.ndarray:
    """(...) squared invariant mass [GeV^2] of two jets, each argument (..., 2) per jet: pT [GeV],
    pseudorapidity, azimuth and mass [GeV]; m1^2 + m2^2 + 2 (E1 E2 - pz1 pz2 - pT1 pT2 cos dphi)."""
    pt, eta, phi, mass = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (pt, eta, phi, mass)))
    pz, energy = pt * np.sinh(eta), np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    transverse = pt[..., 0] * pt[..., 1] * np.cos(phi[..., 0] - phi[..., 1])
    return (mass**2).sum(axis=-1) + 2.0 * (energy[..., 0] * energy[..., 1] - pz[..., 0] * pz[..., 1] - transverse)


def dijet_mass(jets: np.ndarray) -> np.ndarray:
    """(B,) invariant mass [GeV] of the two jets (B, 2, >=4) [pT, eta, phi, mass, ...]."""
    return np.sqrt(np.maximum(dijet_mass_squared(*np.moveaxis(np.asarray(jets)[..., :4], -1, 0)), 0.0))


def scaled_to_dijet_mass(jets: np.ndarray, mjj: np.ndarray) -> np.ndarray:
    """``jets`` (B, 2, >=4) [pT, eta, phi, mass, ...] with both jets' pT and mass scaled by one
    factor per event so that their invariant mass is ``mjj`` (B,) [GeV].

    The dijet mass is homogeneous of degree 1 in (pT, mass) at fixed directions, so the factor is
    mjj / dijet_mass(jets); eta, phi and the other columns are unchanged.
    """
    jets = np.array(jets, copy=True)
    factor = np.asarray(mjj, np.float64) / dijet_mass(jets)
    jets[..., [0, 3]] = (jets[..., [0, 3]] * factor[:, None, None]).astype(jets.dtype)
    return jets
