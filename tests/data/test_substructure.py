"""N-subjettiness with exclusive-kT axes (fastjet), the CATHODE features, and their place in the
processed file: worked examples by hand, one- versus two-prong jets, storage and the cache."""
from __future__ import annotations

import dataclasses

import fastjet
import h5py
import numpy as np
import pytest

from lhco_diffusion.data import cluster, processed, sources, substructure, synthetic
from lhco_diffusion.data.kinematics import four_vectors
from lhco_diffusion.errors import InputError


def taus(*jets: list[tuple[float, float, float]]) -> np.ndarray:
    """(n_jets, 3) tau1..3 of jets given as lists of constituents (pT [GeV], eta, phi)."""
    rows = [(index, *particle) for index, jet in enumerate(jets) for particle in jet]
    jet, pt, eta, phi = np.array(rows).T
    return substructure.nsubjettiness(pt, eta, phi, jet.astype(int), len(jets))


def axis(particles: list[tuple[float, float, float]]) -> tuple[float, float]:
    """(rapidity, phi) of the E-scheme sum of massless particles (pT, eta, phi), written out."""
    pt, eta, phi = np.array(particles, np.float64).T
    px, py, pz, energy = (np.sum(pt * np.cos(phi)), np.sum(pt * np.sin(phi)), np.sum(pt * np.sinh(eta)),
                          np.sum(pt * np.cosh(eta)))
    return 0.5 * np.log((energy + pz) / (energy - pz)), np.arctan2(py, px)


def tau(particles, axes) -> float:
    """fastjet-contrib's normalised measure (beta = 1, R0 = 1) for given axes (rapidity, phi)."""
    pt, eta, phi = np.array(particles, np.float64).T
    distances = [np.hypot(eta - y, np.angle(np.exp(1j * (phi - p)))) for y, p in axes]
    return float(np.sum(pt * np.min(distances, axis=0)) / np.sum(pt))


def test_two_particles_tau1_by_hand_and_tau2_zero():
    jet = [(300.0, 0.5, 0.1), (100.0, -0.3, 0.5)]  # the axis is massive: rapidity != eta of the sum
    (tau1, tau2, tau3), = taus(jet)
    assert tau1 == pytest.approx(tau(jet, [axis(jet)]), rel=1e-9)
    assert tau1 > 0.1 and tau2 == pytest.approx(0.0, abs=1e-12) and tau3 == pytest.approx(0.0, abs=1e-12)


def test_three_particles_the_soft_one_joins_its_nearest_hard_prong():
    """kT distances min(pT^2) dR^2: (1, 3) = 100 x 0.05^2 is the smallest, so the 2 exclusive
    axes are {1 + 3} and {2}; tau3 = 0 (one axis per particle)."""
    one, two, soft = (100.0, 0.0, 0.0), (100.0, 0.2, 0.6), (10.0, 0.0, 0.05)
    jet = [one, two, soft]
    (tau1, tau2, tau3), = taus(jet)
    assert tau1 == pytest.approx(tau(jet, [axis(jet)]), rel=1e-9)
    assert tau2 == pytest.approx(tau(jet, [axis([one, soft]), axis([two])]), rel=1e-9)
    assert tau3 == pytest.approx(0.0, abs=1e-12)


def test_axes_wrap_around_phi_equals_pi():
    jet = [(200.0, 0.0, np.pi - 0.1), (100.0, 0.0, -np.pi + 0.1), (50.0, 0.2, np.pi - 0.02)]
    (tau1, tau2, _), = taus(jet)
    assert tau1 == pytest.approx(tau(jet, [axis(jet)]), rel=1e-9)
    assert tau1 < 0.2  # distances measured across the boundary, not ~2 pi
    assert tau2 == pytest.approx(tau(jet, [axis(jet[::2]), axis(jet[1:2])]), rel=1e-9)


def test_single_particle_and_empty_jets_have_zero_taus_and_ratios():
    values = substructure.nsubjettiness(np.array([500.0]), np.array([0.1]), np.array([0.2]), np.array([0]), 2)
    np.testing.assert_allclose(values, 0.0, atol=1e-12)
    np.testing.assert_array_equal(substructure.ratio(values[:, 1], values[:, 0] * 0), [0.0, 0.0])


def ring(pt_hard: float, eta: float, phi: float, n_soft: int, radius: float) -> list[tuple]:
    """A hard particle with ``n_soft`` 1 GeV particles evenly on a circle around it."""
    angles = 2 * np.pi * (np.arange(n_soft) + 0.5) / n_soft
    return [(pt_hard, eta, phi)] + [(1.0, eta + radius * np.cos(a), phi + radius * np.sin(a)) for a in angles]


def test_one_prong_jets_have_tau21_near_one_and_two_prong_jets_near_zero():
    one_prong = ring(1000.0, 0.0, 0.0, n_soft=20, radius=0.4)
    two_prong = ring(600.0, 0.0, -0.2, n_soft=10, radius=0.1) + ring(400.0, 0.1, 0.25, n_soft=10, radius=0.1)
    (tau1, tau2, _), (tau1_two, tau2_two, _) = taus(one_prong, two_prong)
    assert tau2 / tau1 > 0.9
    assert tau2_two / tau1_two < 0.1


def test_clustered_toy_signal_is_two_pronged_and_background_one_pronged():
    events = cluster.cluster_events(*synthetic.generate_events(400, 0.5, np.random.default_rng(3)), npart=8)
    tau21 = substructure.ratio(events.substructure[..., 1], events.substructure[..., 0])
    assert np.median(tau21[events.label == 0]) > 0.7
    assert np.median(tau21[events.label == 1]) < 0.4
    assert np.all(events.substructure >= 0) and np.all(events.substructure[..., 0] <= 1.0)
    # more axes, smaller tau: almost always (exclusive-kT axes are not the tau-minimising ones)
    assert np.mean(np.diff(events.substructure, axis=-1) <= 1e-6) > 0.95


def one_event_at_a_time(event: np.ndarray) -> list[tuple[list[float], list[float]]] | None:
    """The straightforward computation with fastjet's classic interface: cluster one raw event
    (700, 3) with anti-kT R = 1, then recluster each of its two leading jets with kT and measure
    tau_1..3 to its exclusive axes particle by particle. Returns ``[(pT, eta, phi, mass, N), (tau1,
    tau2, tau3)]`` per jet, or None for an event the preparation drops."""
    real = event[event[:, 0] > 0].astype(np.float64)
    particles = [fastjet.PseudoJet(*momentum) for momentum in four_vectors(*real.T)]
    sequence = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0))
    jets = fastjet.sorted_by_pt(sequence.inclusive_jets())
    if len(jets) < 2 or jets[0].pt() <= 1200.0:
        return None
    result = []
    for jet in jets[:2]:
        constituents = list(jet.constituents())
        kt = fastjet.ClusterSequence(constituents, substructure.KT_AXES)
        total_pt = sum(particle.pt() for particle in constituents)
        taus = [sum(particle.pt() * min(particle.delta_R(axis) for axis in kt.exclusive_jets_up_to(n))
                    for particle in constituents) / total_pt for n in (1, 2, 3)]
        result.append(([jet.pt(), jet.eta(), jet.phi_std(), jet.m(), len(constituents)], taus))
    return result


def test_vectorised_preparation_equals_fastjet_one_event_at_a_time():
    """The fast path (whole blocks in one fastjet call, only the selected jets' constituents listed,
    tau from one array of distances to all axes) reproduces the per-event, per-jet computation."""
    particles, label = synthetic.generate_events(40, 0.5, np.random.default_rng(7))
    soft_second_jet = np.zeros_like(particles[:1])  # lowers the pT threshold of the constituent listing
    soft_second_jet[0, :3] = [(1300.0, 0.0, 0.0), (200.0, 0.3, 0.2), (2.0, -1.0, 3.0)]
    particles, label = np.concatenate([soft_second_jet, particles]), np.concatenate([[0], label])
    events = cluster.cluster_events(particles, label, npart=200)
    expected = [jets for jets in map(one_event_at_a_time, particles) if jets is not None]
    assert len(expected) == len(events) > 20
    jets = np.array([[kinematics for kinematics, _ in event] for event in expected])
    taus = np.array([[tau for _, tau in event] for event in expected])
    np.testing.assert_allclose(events.jets[..., 0], jets[..., 0], rtol=1e-6)
    np.testing.assert_allclose(events.jets[..., 3], jets[..., 3], rtol=1e-5, atol=1e-4)  # m of 1 particle: ~1e-8
    np.testing.assert_allclose(events.jets[..., 1:3], jets[..., 1:3], atol=1e-6)
    np.testing.assert_array_equal(events.jets[..., 4], jets[..., 4])
    np.testing.assert_allclose(events.substructure, taus, rtol=1e-5, atol=1e-7)
    assert np.all(taus[1:, :, 1] > 0)  # the comparison is not between zeros


def test_cathode_features_order_the_jets_by_mass():
    masses = np.array([[500.0, 100.0], [80.0, 300.0]])
    tau = np.array([[[0.5, 0.1, 0.05], [0.4, 0.3, 0.2]], [[0.2, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    features = substructure.high_level_features(masses, tau)
    np.testing.assert_allclose(features, [[100.0, 400.0, 0.75, 0.2], [80.0, 220.0, 0.0, 0.0]], rtol=1e-6)
    with pytest.raises(InputError, match="shapes"):
        substructure.high_level_features(masses, tau[..., :2])


def test_prepared_file_holds_the_substructure(processed_file):
    events = processed.load(processed_file)
    assert events.substructure.shape == (len(events), 2, 3)
    processed.validate(events)
    features = substructure.cathode_features(events)
    assert features.shape == (len(events), 4) and np.all(np.isfinite(features))
    assert np.all(features[:, 1] >= 0)
    selected = events.select(slice(3, 9))
    np.testing.assert_array_equal(selected.substructure, events.substructure[3:9])
    both = processed.Events.concatenate([selected, selected])
    assert both.substructure.shape == (12, 2, 3)


def test_files_without_substructure_still_load(processed_file, tmp_path):
    events = processed.load(processed_file, 0, 50)
    generated = dataclasses.replace(events, substructure=None)
    with processed.EventWriter(tmp_path / "generated.h5", events.npart) as writer:
        writer.append(generated)
    loaded = processed.load(tmp_path / "generated.h5")
    assert loaded.substructure is None and not processed.has_substructure(tmp_path / "generated.h5")
    assert processed.Events.concatenate([loaded, events]).substructure is None
    with pytest.raises(InputError, match="no jet substructure"):
        substructure.cathode_features(loaded)
    with processed.EventWriter(tmp_path / "generated.h5", events.npart, resume=True) as writer:
        with pytest.raises(InputError, match="lacks jet substructure"):
            writer.append(events)


def test_cached_files_without_substructure_are_prepared_again(test_config, processed_file, tmp_path):
    config = test_config.replace(paths=dataclasses.replace(test_config.paths, cache_dir=str(tmp_path)))
    raw = sources.raw_file(test_config, progress=False)
    old = tmp_path / "processed" / sources.processed_name(raw, config.data.npart)
    old.parent.mkdir()
    old.write_bytes(processed_file.read_bytes())
    with h5py.File(old, "a") as file:
        del file[processed.SUBSTRUCTURE]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / raw.name).symlink_to(raw)
    assert sources.processed_file(config, progress=False) == old
    assert processed.has_substructure(old)
