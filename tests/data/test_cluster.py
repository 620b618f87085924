"""fastjet clustering into the processed schema: jets, constituents, mjj, the cuts."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.data import cluster, lhco, processed, synthetic
from lhco_diffusion.data.kinematics import dijet_mass, four_vectors, pt_eta_phi_mass

FLOAT32 = np.finfo(np.float32).eps


@pytest.fixture(scope="module")
def raw_toy():
    return synthetic.generate_events(600, 0.3, np.random.default_rng(11))


@pytest.fixture(scope="module")
def clustered(raw_toy):
    """The toy events clustered with room for every constituent (P=200 > any jet here)."""
    return cluster.cluster_events(*raw_toy, npart=200)


def _absolute_constituents(events: processed.Events) -> np.ndarray:
    """(N, 2, P, 4) four-vectors of the stored constituents back in absolute coordinates."""
    pt_rel, deta, dphi = np.moveaxis(events.particles.astype(np.float64), -1, 0)
    jets = events.jets.astype(np.float64)[:, :, None, :]
    return four_vectors(pt_rel * jets[..., 0], deta + jets[..., 1], dphi + jets[..., 2])


def _check_constituent_sums(events: processed.Events) -> None:
    complete = events.jets[..., 4] < events.npart  # nothing truncated
    assert complete.sum() > 50
    summed = _absolute_constituents(events).sum(axis=2)[complete]
    pt, eta, phi, mass = pt_eta_phi_mass(summed).T
    jets = events.jets[complete].astype(np.float64)
    # float32 storage: relative error ~ eps on pT/eta/phi; the mass comes from E^2 - p^2, whose
    # cancellation inflates the error by ~E^2 / m^2, so its tolerance is ~eps * E^2 / m.
    energy = summed[:, 3]
    np.testing.assert_allclose(pt, jets[:, 0], rtol=20 * FLOAT32)
    np.testing.assert_allclose(eta, jets[:, 1], atol=20 * FLOAT32)
    np.testing.assert_allclose(np.cos(phi - jets[:, 2]), 1.0, atol=20 * FLOAT32)
    tolerance = 2 * FLOAT32 * energy**2 / jets[:, 3]
    worst = np.max(np.abs(mass - jets[:, 3]) / tolerance)
    assert worst < 1.0, f"jet mass off by {worst:.2f} x the float32 tolerance"


def test_constituents_add_up_to_their_jet(clustered):
    """Four-vector sum of each jet's stored constituents reproduces the stored pT, eta, phi, mass."""
    assert np.all(clustered.jets[..., 4] < clustered.npart)
    _check_constituent_sums(clustered)


def test_prepared_file_constituents_add_up_to_their_jet(processed_file):
    """The same on the tiny prepared test file, for the jets P did not truncate."""
    _check_constituent_sums(processed.load(processed_file))


def test_mjj_is_the_invariant_mass_of_the_two_jets(clustered, processed_file):
    for events in (clustered, processed.load(processed_file)):
        np.testing.assert_allclose(dijet_mass(events.jets), events.mjj, rtol=1e-5)


def test_schema_cut_and_ordering(clustered, raw_toy):
    processed.validate(clustered)
    assert 0.6 * len(raw_toy[1]) < len(clustered) < len(raw_toy[1])
    pt_rel = clustered.particles[..., 0]
    assert np.all(clustered.jets[:, 0, 0] > 1200.0)
    assert np.all(clustered.jets[:, 0, 0] >= clustered.jets[:, 1, 0])
    assert np.all(np.diff(pt_rel, axis=-1) <= 0)
    assert np.all(pt_rel <= 1.0)
    dphi = clustered.particles[..., 2][clustered.mask]
    assert np.all((dphi >= -np.pi) & (dphi < np.pi))
    deta_dphi = np.hypot(clustered.particles[..., 1], clustered.particles[..., 2])[clustered.mask]
    assert deta_dphi.max() < 1.0 + 0.1  # anti-kT R=1 jets are round (small slack: axis recoil)


def test_truncation_keeps_the_leading_constituents(raw_toy, clustered):
    small = cluster.cluster_events(*raw_toy, npart=8)
    np.testing.assert_array_equal(small.jets[..., :4], clustered.jets[..., :4])
    np.testing.assert_array_equal(small.particles, clustered.particles[:, :, :8])
    np.testing.assert_array_equal(small.jets[..., 4], np.minimum(clustered.jets[..., 4], 8))


def test_signal_jets_carry_the_resonance_masses(clustered):
    """The toy signal: mjj near 3.5 TeV, one jet near 500 GeV, the other near 100 GeV."""
    signal = clustered.select(clustered.label == 1)
    heavy = signal.jets[..., 3].max(axis=1)
    light = signal.jets[..., 3].min(axis=1)
    assert 3300 < np.median(signal.mjj) < 3700
    assert 450 < np.median(heavy) < 550 and 70 < np.median(light) < 150
    background = clustered.select(clustered.label == 0)
    assert np.median(background.jets[..., 3].max(axis=1)) < 200


def _event(*particles) -> np.ndarray:
    event = np.zeros((lhco.MAX_PARTICLES, 3))
    rows = sorted(particles, reverse=True)
    event[: len(rows)] = rows
    return event


def test_analytic_events():
    """Hand-made events: a back-to-back dijet, a monojet, a soft dijet, a three-jet event."""
    dijet = _event((1500.0, 0.0, 0.0), (1500.0, 0.0, np.pi - 1e-9))
    monojet = _event((2000.0, 0.3, 1.0), (10.0, 0.5, 1.2))
    soft = _event((1000.0, 0.0, 0.0), (1000.0, 0.0, np.pi - 1e-9))
    three_jets = _event((1600.0, 0.0, 3.0), (900.0, 1.0, -1.0), (700.0, -1.5, 0.5), (100.0, -1.2, 0.7))
    raw = np.stack([dijet, monojet, soft, three_jets])
    events = cluster.cluster_events(raw, np.array([0, 1, 0, 1]), npart=3)
    np.testing.assert_array_equal(events.label, [0, 1])  # monojet and soft event dropped
    np.testing.assert_allclose(events.mjj[0], 3000.0, rtol=1e-6)
    expected = [[1500.0, 0.0, 0.0, 0.0], [1500.0, 0.0, np.pi - 1e-9, 0.0]]
    np.testing.assert_allclose(events.jets[0, :, :4], expected, atol=1e-3)
    jets = events.jets[1]
    np.testing.assert_allclose(jets[:, 0], [1600.0, 900.0], rtol=1e-6)
    np.testing.assert_array_equal(jets[:, 4], [1, 1])
    np.testing.assert_allclose(events.particles[1, :, 0, 0], [1.0, 1.0])  # pT_rel of single-particle jets


def test_dphi_is_wrapped_across_the_phi_boundary():
    """A jet straddling phi = +-pi has constituents at small dphi, not near 2 pi."""
    event = _event((1000.0, 0.0, np.pi - 0.05), (800.0, 0.1, -np.pi + 0.05), (1700.0, 0.0, 0.0))
    events = cluster.cluster_events(event[None], np.zeros(1), npart=4)
    assert np.abs(events.jets[0, 0, 2]) > 3.0  # the leading jet sits at phi ~ +-pi
    straddling = events.particles[0, 0]
    real = straddling[:, 0] > 0
    assert real.sum() == 2
    np.testing.assert_allclose(np.abs(straddling[real, 2]), 0.05, atol=0.01)
    np.testing.assert_allclose(straddling[real, 0].sum(), 1800.0 / events.jets[0, 0, 0], rtol=1e-3)


def test_empty_chunk_gives_no_events():
    events = cluster.cluster_events(np.zeros((2, lhco.MAX_PARTICLES, 3)), np.zeros(2), npart=5)
    assert len(events) == 0 and events.particles.shape == (0, 2, 5, 3)
