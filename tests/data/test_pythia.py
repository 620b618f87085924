"""Pseudo-LHCO events from Pythia 8, checked through the same preparation as the real file.

The physics tests generate one small sample (QCD dijets and W' -> X(500) Y(100) events), write
it in the raw R&D layout, cluster it with ``sources.prepare_file`` and look at what an analysis
sees: the dijet mass, the two jet masses, the leading-jet selection.
"""
from __future__ import annotations

import importlib.util

import awkward as ak
import numpy as np
import pytest

from lhco_diffusion.data import lhco, processed, pythia, sources
from lhco_diffusion.errors import InputError

requires_pythia = pytest.mark.skipif(
    importlib.util.find_spec("pythia8mc") is None,
    reason="Pythia 8 (pythia8mc, the 'pythia' extra: pip install -e '.[pythia]') is not installed",
)

N_BACKGROUND, N_SIGNAL, SEED = 1000, 400, 11


@pytest.fixture(scope="module")
def pseudo_lhco(tmp_path_factory):
    """(raw path, prepare summary, processed Events) of a small two-worker Pythia sample."""
    directory = tmp_path_factory.mktemp("pythia")
    raw = pythia.generate(directory / "raw.h5", N_BACKGROUND, N_SIGNAL, seed=SEED, workers=2,
                          progress=False)
    summary = sources.prepare_file(raw, directory / "processed.h5", npart=30,
                                   jet_radius=pythia.JET_RADIUS,
                                   min_leading_jet_pt=pythia.MIN_LEADING_JET_PT,
                                   chunk_size=500, workers=1, progress=False)
    return raw, summary, processed.load(directory / "processed.h5")


@requires_pythia
@pytest.mark.slow
def test_raw_file_has_the_lhco_layout(pseudo_lhco):
    raw, _, _ = pseudo_lhco
    particles, label = (np.concatenate(parts) for parts in zip(*lhco.iter_chunks(raw, 1000)))
    assert particles.shape == (N_BACKGROUND + N_SIGNAL, lhco.MAX_PARTICLES, 3)
    assert np.bincount(label).tolist() == [N_BACKGROUND, N_SIGNAL]
    real = particles[..., 0] > 0
    assert not np.any(real[:, 1:] & ~real[:, :-1]), "padding must follow the real particles"
    assert np.all(np.diff(np.where(real, particles[..., 0], 0.0), axis=1) <= 0), "pT-ordered"
    assert np.all(np.abs(particles[..., 1][real]) < pythia.MAX_ABS_ETA)
    assert np.all(particles[~real] == 0)
    assert np.all(real.sum(axis=1) > 50), "hadronised events have many particles"
    assert np.count_nonzero(np.diff(label)) > 2, "signal and background are shuffled together"


@requires_pythia
@pytest.mark.slow
def test_every_generated_event_passes_the_leading_jet_cut(pseudo_lhco):
    _, summary, events = pseudo_lhco
    assert summary["n_read"] == summary["n_kept"] == N_BACKGROUND + N_SIGNAL
    assert np.all(events.jets[:, 0, 0] > pythia.MIN_LEADING_JET_PT)
    assert np.all(events.jets[:, 0, 0] >= events.jets[:, 1, 0])


@requires_pythia
@pytest.mark.slow
def test_signal_mjj_peaks_at_the_resonance_mass(pseudo_lhco):
    mjj = pseudo_lhco[2].mjj[pseudo_lhco[2].label == 1]
    counts, edges = np.histogram(mjj, bins=np.arange(2000.0, 5000.0, 100.0))
    assert 3300.0 <= edges[np.argmax(counts)] < 3700.0
    assert 3200.0 < np.median(mjj) < 3600.0
    assert np.mean(np.abs(mjj - pythia.RESONANCE_MASS) < 400.0) > 0.6


@requires_pythia
@pytest.mark.slow
def test_signal_jet_masses_cluster_at_x_and_y(pseudo_lhco):
    events = pseudo_lhco[2]
    light, heavy = np.sort(events.jets[:, :, 3], axis=1).T  # [GeV]
    near_x_and_y = (np.abs(heavy - pythia.X_MASS) < 100.0) & (np.abs(light - pythia.Y_MASS) < 50.0)
    signal = events.label == 1
    assert abs(np.median(heavy[signal]) - pythia.X_MASS) < 60.0
    assert abs(np.median(light[signal]) - pythia.Y_MASS) < 40.0  # ungroomed R = 1 jets: UE adds mass
    assert np.mean(near_x_and_y[signal]) > 0.5
    assert np.mean(near_x_and_y[~signal]) < 0.3 * np.mean(near_x_and_y[signal])


@requires_pythia
@pytest.mark.slow
def test_background_mjj_falls_with_mass(pseudo_lhco):
    events = pseudo_lhco[2]
    counts, _ = np.histogram(events.mjj[events.label == 0], bins=[2800, 3300, 3800, 4300, 4800])
    assert np.all(np.diff(counts) < 0), counts
    assert counts[-1] > 0


@requires_pythia
@pytest.mark.slow
def test_generation_is_seeded():
    first = pythia.generate_process(pythia.SIGNAL, 3, seed=5)
    again = pythia.generate_process(pythia.SIGNAL, 3, seed=5)
    other_worker = pythia.generate_process(pythia.SIGNAL, 3, seed=5, worker=1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_worker)


def test_detector_keeps_visible_final_particles_in_acceptance_pt_ordered():
    def particle(pdg_id, status, pt, eta, phi=0.5):
        return {"id": pdg_id, "status": status,
                "p": {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
                      "e": pt * np.cosh(eta)}}

    record = ak.Array([
        [particle(211, 1, 20.0, 0.1), particle(2212, -12, 1.0, 9.0), particle(22, 1, 50.0, -2.4),
         particle(12, 1, 80.0, 0.0), particle(211, 1, 30.0, 2.6), particle(130, 1, 5.0, 1.0, -3.0)],
        [particle(11, 1, 7.0, 0.0)],
    ])
    particles = pythia.detector_particles(record, charge_type=None, rng=None)
    assert particles.shape == (2, lhco.MAX_PARTICLES, 3) and particles.dtype == np.float32
    expected = [[50.0, -2.4, 0.5], [20.0, 0.1, 0.5], [5.0, 1.0, -3.0]]  # pT-ordered
    np.testing.assert_allclose(particles[0, :3], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(particles[1, 0], [7.0, 0.0, 0.5], rtol=1e-6, atol=1e-6)
    assert np.all(particles[0, 3:] == 0) and np.all(particles[1, 1:] == 0)


@pytest.mark.parametrize("pdg_id, charge_type, resolution", [
    (211, 3, pythia.TRACKS), (22, 0, pythia.PHOTONS), (2112, 0, pythia.NEUTRAL_HADRONS),
])
def test_smearing_has_the_resolution_of_the_particle_class(pdg_id, charge_type, resolution):
    n = 200_000
    pt, energy = np.full(n, 100.0), np.full(n, 150.0)
    smeared = pythia.smear_pt(pt, energy, np.full(n, pdg_id), np.full(n, charge_type),
                              np.random.default_rng(0))
    expected = resolution.relative(100.0, 150.0)
    assert abs(np.mean(smeared) / 100.0 - 1.0) < 5 * expected / np.sqrt(n)
    assert np.std(smeared) / 100.0 == pytest.approx(expected, rel=0.01)


def test_resolution_adds_its_terms_in_quadrature():
    resolution = pythia.Resolution(stochastic=0.5, constant=0.03, linear=1e-4)
    assert resolution.relative(400.0, 100.0) == pytest.approx(np.sqrt(0.05**2 + 0.03**2 + 0.04**2))


def test_leading_jet_merges_particles_within_the_radius_only():
    particles = np.zeros((3, 5, 3), np.float32)
    particles[0, :3] = [[700.0, 0.0, 0.0], [600.0, 0.5, 0.3], [900.0, 0.0, 3.0]]  # 1300 GeV jet vs 900
    particles[1, :2] = [[700.0, 0.0, 0.0], [600.0, 0.0, 1.5]]  # too far apart to merge
    leading = pythia.leading_jet_pt(particles)
    merged = np.hypot(700.0 + 600.0 * np.cos(0.3), 600.0 * np.sin(0.3))
    assert leading[0] == pytest.approx(merged, rel=1e-6)
    assert leading[1] == pytest.approx(700.0)
    assert leading[2] == 0.0


@pytest.mark.parametrize("arguments", [
    {"n_background": -1, "n_signal": 10}, {"n_background": 0, "n_signal": 0},
    {"n_background": 10, "n_signal": 10, "workers": 0}, {"n_background": 10, "n_signal": 0, "seed": -1},
])
def test_bad_requests_are_input_errors(tmp_path, arguments):
    with pytest.raises(InputError):
        pythia.generate(tmp_path / "raw.h5", **arguments)
    assert not (tmp_path / "raw.h5").exists()
