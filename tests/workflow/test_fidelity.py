"""Fidelity metrics against known answers: W1 of shifted samples, FPD/KPD of Gaussians and of
JetNet's published examples, the noise floor's 1/sqrt(n) law, the report files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lhco_diffusion.data.processed import Events
from lhco_diffusion.workflow import fidelity


def toy_events(n: int, seed: int, pt_shift: float = 0.0, npart: int = 6) -> Events:
    """``n`` dijet events with Gaussian jets and particles, the jet pT shifted by ``pt_shift`` GeV."""
    rng = np.random.default_rng(seed)
    n_constituents = rng.integers(2, npart + 1, size=(n, 2))
    mask = np.arange(npart) < n_constituents[..., None]
    pt_rel = rng.uniform(0.01, 0.5, size=(n, 2, npart))
    angles = rng.normal(0.0, 0.2, size=(n, 2, npart, 2))
    particles = np.concatenate([pt_rel[..., None], angles], axis=-1) * mask[..., None]
    pt = rng.normal(1500.0, 100.0, size=(n, 2)) + pt_shift
    phi = rng.uniform(-np.pi, np.pi, size=(n, 1)) + np.array([0.0, np.pi]) + rng.normal(0, 0.1, (n, 2))
    jets = np.stack([pt, rng.normal(0, 1, (n, 2)), phi, rng.gamma(4.0, 40.0, (n, 2)), n_constituents], -1)
    return Events(particles, jets, rng.normal(3500.0, 400.0, n), np.zeros(n, np.int8))


def test_identical_samples_have_zero_distances():
    events = toy_events(2000, seed=1)
    assert all(value == 0.0 for value in fidelity.wasserstein(events, events).values())
    matrix = fidelity.jet_feature_matrix(events)
    value, error = fidelity.fpd(matrix, matrix, num_batches=5, num_points=5)
    assert value == pytest.approx(0.0, abs=2e-3)


def test_shifted_jet_pt_gives_the_shift_as_w1_and_nothing_else():
    events = toy_events(3000, seed=2)
    shifted = toy_events(3000, seed=2, pt_shift=50.0)
    distances = fidelity.wasserstein(shifted, events)
    assert distances["jet_pt"] == pytest.approx(50.0, rel=1e-6)
    assert distances["jet_eta"] == 0.0 and distances["particle_pt_rel"] == 0.0
    assert distances["jets_pt_balance"] > 0.0  # (pT1 - pT2) / (pT1 + pT2) changes with a common shift


def test_w1_of_independent_shifted_samples_is_the_shift():
    events = toy_events(20_000, seed=3)
    other = toy_events(20_000, seed=4, pt_shift=30.0)
    assert fidelity.wasserstein(other, events)["jet_pt"] == pytest.approx(30.0, abs=2.0)


def test_leading_particle_is_the_hardest_real_particle_of_each_jet():
    events = toy_events(400, seed=5)  # particles in random order, 2 to 6 of 6 slots real
    expected = [max(particle[0] for particle, real in zip(jet, jet_mask) if real)
                for event, event_mask in zip(events.particles, events.mask) for jet, jet_mask in zip(event, event_mask)]
    np.testing.assert_array_equal(fidelity.feature_values(events)["particle_leading_pt_rel"], expected)
    harder = Events(events.particles * np.array([1.1, 1.0, 1.0]), events.jets, events.mjj, events.label)
    # every leading pT_rel 10 % higher: the W1 of a sample and its own scaled copy is 0.1 times its mean
    distances = fidelity.wasserstein(harder, events)
    assert distances["particle_leading_pt_rel"] == pytest.approx(0.1 * np.mean(expected), rel=1e-6)
    assert distances["jet_pt"] == 0.0


def white_noise(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) Gaussian samples whitened to sample mean exactly 0 and sample covariance exactly I, so
    the distance between two samples is known exactly, not only up to their fluctuations."""
    x = rng.standard_normal((n, d))
    x -= x.mean(axis=0)
    return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T


def test_fpd_of_unit_gaussians_is_the_squared_shift():
    rng = np.random.default_rng(5)
    shift = np.array([0.5, -1.0, 0.0])
    real, generated = white_noise(rng, 20_000, 3), white_noise(rng, 20_000, 3) + shift
    value, error = fidelity.fpd(real, generated, normalise=False)
    assert value == pytest.approx(shift @ shift, abs=3 * error)
    assert error < 0.02


def test_fpd_adds_the_trace_term_of_different_covariances():
    rng = np.random.default_rng(6)
    widths = np.array([1.0, 2.0, 0.5])
    real, generated = white_noise(rng, 20_000, 3), white_noise(rng, 20_000, 3) * widths + 1.0
    expected = 3 * 1.0 + np.sum((widths - 1.0) ** 2)  # |mu|^2 + sum (sigma1 - sigma2)^2
    value, error = fidelity.fpd(real, generated, normalise=False)
    assert value == pytest.approx(expected, abs=3 * error)
    assert error < 0.05
    assert fidelity.frechet_distance(np.zeros(3), np.eye(3), np.ones(3), np.diag(widths**2)) == pytest.approx(
        expected)


@pytest.mark.parametrize("normalise, fpd_expected, kpd_expected", [(True, 2.0, 15.0), (False, 8.0, 624.0)])
def test_jetnet_published_examples(normalise, fpd_expected, kpd_expected):
    """JetNet's own test: (50000, 2) twos against zeros."""
    twos, zeros = np.full((50_000, 2), 2.0), np.zeros((50_000, 2))
    value, error = fidelity.fpd(twos, zeros, normalise=normalise, num_batches=2, num_points=3)
    assert value == pytest.approx(fpd_expected, rel=0.01) and error < 1e-3
    value, error = fidelity.kpd(twos[:2000], zeros[:2000], normalise=normalise)
    assert (value, error) == pytest.approx((kpd_expected, 0.0))
    assert fidelity.fpd(zeros, zeros, normalise=normalise, num_batches=2, num_points=3)[0] == pytest.approx(
        0.0, abs=1e-3)


def test_kpd_of_identical_distributions_is_consistent_with_zero():
    rng = np.random.default_rng(7)
    real, generated = rng.standard_normal((4000, 4)), rng.standard_normal((4000, 4))
    value, error = fidelity.kpd(real, generated, batch_size=1000)
    assert error > 0 and abs(value) < 3 * error
    shifted_value, shifted_error = fidelity.kpd(real, generated + 0.3, batch_size=1000)
    assert shifted_value > 5 * shifted_error


def test_noise_floor_shrinks_like_one_over_sqrt_n():
    small, large = toy_events(1000, seed=8), toy_events(16_000, seed=9)
    floor_small = fidelity.noise_floor(small, len(small), n_splits=10)
    floor_large = fidelity.noise_floor(large, len(large), n_splits=10)
    for name in ("jet_pt", "jet_mass", "mjj", "particle_deta"):
        assert floor_small[name][0] / floor_large[name][0] == pytest.approx(4.0, rel=0.3)


def test_a_faithful_sample_sits_at_its_noise_floor_and_a_shifted_one_above():
    reference = toy_events(1500, seed=10)
    report = fidelity.compare(toy_events(1500, seed=11), reference, n_bootstrap=5)
    ratios = {name: row["ratio"] for name, row in report["wasserstein"].items()}
    assert max(ratios.values()) < 2.5 and min(ratios.values()) > 0.3
    assert report["kpd"]["value"] < 3 * report["kpd"]["error"] + 1e-4
    shifted = fidelity.compare(toy_events(1500, seed=11, pt_shift=120.0), reference, n_bootstrap=5)
    assert shifted["worst_ratio"]["feature"] == "jet_pt" and shifted["worst_ratio"]["ratio"] > 5
    assert shifted["fpd"]["value"] > 2 * report["fpd"]["value"] + 3 * shifted["fpd"]["error"]


def test_by_jet_shape_locates_a_miss_in_the_narrow_jets_that_the_pooled_features_dilute():
    """Generated jets of the narrowest fifth (m/pT) 25 % too wide: their particles' dR stands out in
    that bin, while the pooled deta, dphi and the other bins stay near their floor."""
    reference = toy_events(3000, seed=16)
    faithful = toy_events(3000, seed=17)
    edges = fidelity.shape_edges(reference)
    narrow = (faithful.jets[..., 3] / faithful.jets[..., 0]) < edges[0]
    widened = faithful.particles * np.where(narrow[..., None, None], [1.0, 1.25, 1.25], 1.0)
    generated = Events(widened, faithful.jets, faithful.mjj, faithful.label)
    reports = {name: fidelity.compare(events, reference, n_bootstrap=4)
               for name, events in (("faithful", faithful), ("wide", generated))}
    ratios = {name: {key: row["ratio"] for key, row in report["by_jet_shape"]["table"].items()}
              for name, report in reports.items()}
    assert set(ratios["faithful"]) == {f"{name}/{shape}" for name in fidelity.SHAPE_FEATURES for shape in range(5)}
    assert max(ratios["faithful"].values()) < 2.5 and min(ratios["faithful"].values()) > 0.2
    assert reports["wide"]["by_jet_shape"]["worst_ratio"] == {"feature": "particle_distance/0",
                                                             "ratio": ratios["wide"]["particle_distance/0"]}
    assert ratios["wide"]["particle_distance/0"] > 5.0
    assert all(ratios["wide"][f"particle_distance/{shape}"] == ratios["faithful"][f"particle_distance/{shape}"]
               for shape in range(1, 5))
    pooled = reports["wide"]["wasserstein"]
    assert max(pooled["particle_deta"]["ratio"], pooled["particle_dphi"]["ratio"]) < 0.6 * ratios["wide"]["particle_distance/0"]
    shares = reports["wide"]["by_jet_shape"]["reference_share"]
    np.testing.assert_allclose(shares, 0.2, atol=1e-3)
    assert "| < " in fidelity.markdown(reports["wide"]) and "Worst by jet shape:" in fidelity.markdown(reports["wide"])


def test_report_files_hold_the_table_and_the_two_sample_auc(tmp_path):
    report = fidelity.compare(toy_events(600, seed=12), toy_events(600, seed=13), n_bootstrap=2)
    labels = np.repeat([0, 1], 50)
    runs = [(seed, labels + np.random.default_rng(seed).normal(0, 2, 100), labels) for seed in (1, 0, 2)]
    fidelity.add_two_sample_auc(report, "two-sample-SB", runs, (0.16, 0.84))
    json_path, markdown_path = fidelity.write(report, tmp_path)
    written = json.loads(json_path.read_text())
    assert written["two_sample"]["two-sample-SB"]["seeds"] == [0, 1, 2]
    assert 0.5 < written["two_sample"]["two-sample-SB"]["auc"]["median"] < 1.0
    assert set(written["wasserstein"]) == set(fidelity.FEATURES)
    text = markdown_path.read_text()
    assert "| jet pT [GeV] |" in text and "Two-sample classifier AUC (two-sample-SB, 3 seeds)" in text


@pytest.mark.slow
def test_evaluate_writes_the_fidelity_report_beside_the_plots(tmp_path):
    from lhco_diffusion.commands import evaluate
    from lhco_diffusion.data import processed

    paths = tmp_path / "generated.h5", tmp_path / "reference.h5"
    for path, seed in zip(paths, (14, 15)):
        with processed.EventWriter(path, 6) as writer:
            writer.append(toy_events(500, seed))
    config = str(Path(__file__).resolve().parents[2] / "configs" / "test.yaml")
    assert evaluate.main(["--config", config, "--set", "evaluation.formats=[png]", "--output", str(tmp_path / "out"),
                          "--generated", str(paths[0]), "--reference", str(paths[1])]) == 0
    report = json.loads((tmp_path / "out" / "fidelity.json").read_text())
    assert report["n_generated"] == report["n_reference"] == 500 and report["generated"] == str(paths[0])
    assert (tmp_path / "out" / "fidelity.md").exists() and (tmp_path / "out" / "generated_vs_reference.png").exists()
