"""Jet substructure for the low-dimensional CATHODE baseline: N-subjettiness and the four features.

N-subjettiness (Thaler, Van Tilburg) as fastjet-contrib's ``Nsubjettiness`` computes it with
``KT_Axes`` (exclusive kT axes) and ``NormalizedMeasure(beta=1, R0=1)``:

    tau_N = sum_i pT_i min_k dR(i, axis_k)  /  (R0 sum_i pT_i)

The N axes are the exclusive kT jets of the jet's own constituents: fastjet reclusters them with
the kT algorithm (R = ``JetDefinition.max_allowable_R``, E-scheme recombination) and stops at N
jets. dR is measured in rapidity and azimuth (the massless constituents' rapidity is their eta;
the massive axes use their rapidity, as fastjet's ``squared_distance`` does). A jet with fewer
than N constituents has one axis per constituent, so its tau_N is 0; a ratio with a zero
denominator is defined as 0.

    tau = nsubjettiness(pt, eta, phi, jet, n_jets)     # (n_jets, 3) tau1, tau2, tau3
    features = cathode_features(events)               # (N, 4) CATHODE's feature set
"""
from __future__ import annotations

import warnings

import fastjet
import numpy as np

from lhco_diffusion.data import fastjet_arrays
from lhco_diffusion.data.kinematics import four_vectors, wrap_phi
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError

MAX_N = 3  # tau1, tau2, tau3 are stored
BETA = 1.0  # angular exponent of the measure
R0 = 1.0  # characteristic jet radius of the normalisation
FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")  # CATHODE's order
FEATURE_UNITS = ("GeV", "GeV", "", "")
# contrib's KT_Axes: the constituents reclustered with kT, E-scheme, R large enough that no jet ever
# merges with the beam before the last step
KT_AXES = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)


def nsubjettiness(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, jet: np.ndarray,
                  n_jets: int) -> np.ndarray:
    """(n_jets, 3) float64 tau1, tau2, tau3 (beta = 1, R0 = 1, exclusive-kT axes) of each jet.

    pt [GeV], eta, phi (M,): the constituents of all jets; jet (M,) int: the jet (0..n_jets-1) each
    belongs to. Every jet is reclustered in one vectorised fastjet call, and the distances of every
    constituent to all 1 + 2 + 3 axes of its jet are computed in one array. Jets without
    constituents get 0.
    """
    pt, eta, phi = (np.asarray(x, np.float64).reshape(-1) for x in (pt, eta, phi))
    jet = np.asarray(jet, np.int64).reshape(-1)
    if np.any(np.diff(jet) < 0):  # fastjet takes each jet's constituents as one contiguous block
        order = np.argsort(jet, kind="stable")
        pt, eta, phi, jet = pt[order], eta[order], phi[order], jet[order]
    counts = np.bincount(jet, minlength=n_jets)
    sequence = fastjet_arrays.cluster(four_vectors(pt, eta, phi), counts, KT_AXES)
    axis_rapidity, axis_phi = _exclusive_axes(sequence, n_jets)
    dphi = np.abs(wrap_phi(phi) - axis_phi[:, jet])  # (axes, M) in [0, 2 pi]: both angles in [-pi, pi]
    squared_distance = (eta - axis_rapidity[:, jet]) ** 2 + np.minimum(dphi, 2 * np.pi - dphi) ** 2
    normalisation = R0 * np.bincount(jet, weights=pt, minlength=n_jets)
    tau = np.zeros((n_jets, MAX_N))
    for n in range(1, MAX_N + 1):
        distance = np.sqrt(np.min(squared_distance[_axis_rows(n)], axis=0))
        summed = np.bincount(jet, weights=pt * distance**BETA, minlength=n_jets)
        tau[:, n - 1] = ratio(summed, normalisation)
    return tau


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (tau21 = tau2 / tau1 and the like)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def high_level_features(jet_mass: np.ndarray, substructure: np.ndarray) -> np.ndarray:
    """(N, 4) float32 CATHODE features from jet_mass (N, 2) [GeV] and substructure (N, 2, 3).

    Jets ordered by mass, j1 the lighter: mj1 [GeV], delta_mj = mj2 - mj1 [GeV] (>= 0),
    tau21 of j1, tau21 of j2.
    """
    jet_mass = np.asarray(jet_mass, np.float64)
    substructure = np.asarray(substructure, np.float64)
    if jet_mass.shape[1:] != (2,) or substructure.shape != (*jet_mass.shape, MAX_N):
        raise InputError(f"jet masses {jet_mass.shape} and substructure {substructure.shape} must have shapes "
                         f"(N, 2) and (N, 2, {MAX_N})")
    tau21 = ratio(substructure[..., 1], substructure[..., 0])
    lighter = np.argsort(jet_mass, axis=1, kind="stable")  # (N, 2): lighter jet first
    mass = np.take_along_axis(jet_mass, lighter, axis=1)
    tau21 = np.take_along_axis(tau21, lighter, axis=1)
    return np.stack([mass[:, 0], mass[:, 1] - mass[:, 0], tau21[:, 0], tau21[:, 1]], axis=1).astype(np.float32)


def cathode_features(events: Events) -> np.ndarray:
    """(N, 4) float32 ``FEATURES`` of processed events (see ``high_level_features``).

    Raises ``InputError`` for events without jet substructure (generated events, or a file
    prepared by an older version).
    """
    if events.substructure is None:
        raise InputError("these events carry no jet substructure (tau_N); the high-level modes need a "
                         "processed file prepared by this version: delete the cached file or run prepare again")
    return high_level_features(events.jets[..., 3], events.substructure)


def _axis_rows(n: int) -> slice:
    """Rows of the N = n axes in ``_exclusive_axes``'s table: N = 1 in row 0, N = 2 in rows 1-2, ..."""
    first = n * (n - 1) // 2
    return slice(first, first + n)


def _exclusive_axes(sequence: fastjet.ClusterSequence, n_jets: int) -> tuple[np.ndarray, np.ndarray]:
    """(1 + 2 + ... + MAX_N, n_jets) rapidity and phi of each jet's exclusive kT axes, the N = n
    ones in rows ``_axis_rows(n)``. A jet with fewer than n constituents has fewer axes: the missing
    ones get an infinite rapidity, so they are never the closest."""
    rapidity = np.full((_axis_rows(MAX_N).stop, n_jets), np.inf)
    azimuth = np.zeros_like(rapidity)
    for n in range(1, MAX_N + 1):
        with warnings.catch_warnings():  # fastjet's Python layer warns even for kT, where it is exact
            warnings.filterwarnings("ignore", message="dcut and exclusive jets")
            axes = sequence.exclusive_jets_up_to(n)
        momenta, counts = fastjet_arrays.flat_momenta(axes)
        px, py, pz, energy = momenta.T
        owner = np.repeat(np.arange(n_jets), counts)
        row = _axis_rows(n).start + np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        rapidity[row, owner] = 0.5 * np.log((energy + pz) / (energy - pz))
        azimuth[row, owner] = np.arctan2(py, px)
    return rapidity, azimuth
