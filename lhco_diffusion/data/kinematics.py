"""Four-vector helpers shared by the clustering, the toy generator and the tests (numpy, float64)."""
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
