"""The raw LHCO layout: chunked reading, validation, writing, and the synthetic generator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lhco_diffusion.data import lhco, synthetic
from lhco_diffusion.data.kinematics import four_vectors, pt_eta_phi_mass
from lhco_diffusion.errors import InputError


def _mass(momenta: np.ndarray) -> np.ndarray:
    return pt_eta_phi_mass(momenta)[..., 3]


def _random_events(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n raw events with 1-699 pT-ordered particles each, zero-padded."""
    rng = np.random.default_rng(seed)
    particles = np.zeros((n, lhco.MAX_PARTICLES, 3))
    for event, count in enumerate(rng.integers(1, lhco.MAX_PARTICLES, n)):
        particles[event, :count, 0] = np.sort(rng.exponential(20.0, count))[::-1] + 0.5
        particles[event, :count, 1] = rng.uniform(-2.5, 2.5, count)
        particles[event, :count, 2] = rng.uniform(-np.pi, np.pi, count)
    return particles, rng.integers(0, 2, n).astype(np.int8)


def test_fixed_format_round_trip_in_chunks(tmp_path):
    particles, label = _random_events(23)
    path = tmp_path / "raw.h5"
    lhco.write_raw(path, particles, label)
    with pd.HDFStore(path, "r") as store:
        assert store.get_storer(lhco.KEY).format_type == "fixed"
    assert lhco.count_events(path) == 23
    chunks = list(lhco.iter_chunks(path, chunk_size=5, start=2, stop=20))
    assert [len(chunk_label) for _, chunk_label in chunks] == [5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), particles[2:20])
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), label[2:20])


def test_table_format_appends_and_reads_back(tmp_path):
    particles, label = _random_events(12, seed=1)
    path = tmp_path / "raw.h5"
    with lhco.RawWriter(path) as writer:
        writer.append(particles[:7].astype(np.float32), label[:7])
        writer.append(particles[7:].astype(np.float32), label[7:])
    assert lhco.count_events(path) == 12
    read = list(lhco.iter_chunks(path, chunk_size=4, start=3))
    np.testing.assert_array_equal(np.concatenate([c[0] for c in read]), particles[3:].astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([c[1] for c in read]), label[3:])


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        lhco.count_events(tmp_path / "absent.h5")


def test_not_an_hdf_file(tmp_path):
    path = tmp_path / "events.h5"
    path.write_text("pT, eta, phi\n")
    with pytest.raises(InputError, match="is not an HDF5 file"):
        lhco.count_events(path)


def test_wrong_key(tmp_path):
    path = tmp_path / "raw.h5"
    pd.DataFrame(np.zeros((3, lhco.N_COLUMNS))).to_hdf(path, key="events", mode="w")
    with pytest.raises(InputError, match="no pandas key 'df' \\(keys: events\\)"):
        list(lhco.iter_chunks(path, 10))


@pytest.mark.parametrize("columns", [2100, 2102, 7])
def test_wrong_column_count(tmp_path, columns):
    path = tmp_path / "raw.h5"
    pd.DataFrame(np.zeros((3, columns))).to_hdf(path, key="df", mode="w")
    with pytest.raises(InputError, match=f"has {columns} columns per event, expected 2101"):
        lhco.count_events(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_chunk(tmp_path, bad_value):
    particles, label = _random_events(10, seed=2)
    particles[7, 0, 1] = bad_value
    path = tmp_path / "raw.h5"
    lhco.write_raw(path, particles, label)
    chunks = lhco.iter_chunks(path, chunk_size=4)
    assert len(next(chunks)[1]) == 4  # events 0-3 are fine
    with pytest.raises(InputError, match="NaN or infinite values in events 4-7"):
        next(chunks)


def test_write_raw_rejects_wrong_shapes_and_leaves_no_file(tmp_path):
    with pytest.raises(InputError, match="shape"):
        lhco.write_raw(tmp_path / "raw.h5", np.zeros((2, 100, 3)), np.zeros(2))
    assert not list(tmp_path.iterdir())


def test_pad_by_pt_sorts_truncates_and_counts():
    group = np.array([1, 0, 1, 1, 0, 3])
    pt = np.array([5.0, 1.0, 9.0, 7.0, 2.0, 4.0])
    padded, counts = lhco.pad_by_pt(group, pt, pt[:, None], n_groups=4, width=2)
    np.testing.assert_array_equal(counts, [2, 3, 0, 1])
    np.testing.assert_array_equal(padded[..., 0], [[2, 1], [9, 7], [0, 0], [4, 0]])


@pytest.fixture(scope="module")
def toy_events():
    return synthetic.generate_events(2000, 0.5, np.random.default_rng(3))


def test_synthetic_events_have_the_raw_layout(toy_events):
    particles, label = toy_events
    assert particles.shape == (2000, lhco.MAX_PARTICLES, 3) and particles.dtype == np.float32
    pt = particles[..., 0]
    real = pt > 0
    assert np.all(np.diff(pt, axis=1) <= 0), "particles must be pT-ordered"
    assert np.all(real[:, 1:] <= real[:, :-1]), "padding must come after the real particles"
    assert np.all(particles[~real] == 0)
    assert np.all(pt[real] > synthetic.MIN_PT)
    assert np.all(np.abs(particles[..., 1][real]) < synthetic.MAX_ETA)
    assert np.all(np.abs(particles[..., 2][real]) <= np.pi)
    assert 50 < np.median(real.sum(axis=1)) < 400
    assert 0.45 < label.mean() < 0.55


def test_synthetic_resonance_sits_at_3500_gev(toy_events):
    """The summed four-momentum of all particles of signal events peaks at the W' mass."""
    particles, label = toy_events
    total = four_vectors(*np.moveaxis(particles[label == 1].astype(np.float64), -1, 0)).sum(axis=1)
    assert 3300 < np.median(_mass(total)) < 3700


def test_resonance_decay_kinematics():
    """W' -> X(qq) Y(qq): the quark pairs have exactly the X and Y masses, all four the W' mass."""
    quarks = synthetic._resonance_partons(500, np.random.default_rng(4))
    np.testing.assert_allclose(_mass(quarks), 0.0, atol=1e-3)
    np.testing.assert_allclose(_mass(quarks[:, :2].sum(axis=1)), synthetic.X_MASS, rtol=1e-9)
    np.testing.assert_allclose(_mass(quarks[:, 2:].sum(axis=1)), synthetic.Y_MASS, rtol=1e-9)
    total = quarks.sum(axis=1)
    np.testing.assert_allclose(total[:, :2], 0.0, atol=1e-6)  # produced at rest transversely
    standard_error = synthetic.RESONANCE_WIDTH / np.sqrt(len(total))
    assert abs(np.mean(_mass(total)) - synthetic.RESONANCE_MASS) < 5 * standard_error


def test_synthetic_file_is_deterministic_and_independent_of_chunking(tmp_path):
    first, second, other_seed = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    synthetic.generate_raw(first, 2500, 0.2, seed=5, chunk_size=1000)
    synthetic.generate_raw(second, 2500, 0.2, seed=5, chunk_size=3000)
    synthetic.generate_raw(other_seed, 2500, 0.2, seed=6)
    a, b, c = (next(lhco.iter_chunks(path, 2500)) for path in (first, second, other_seed))
    assert lhco.count_events(first) == 2500
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert 0.15 < a[1].mean() < 0.25


def test_synthetic_rejects_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="at least 1"):
        synthetic.generate_raw(tmp_path / "raw.h5", 0, 0.1, seed=1)
    with pytest.raises(InputError, match="signal fraction"):
        synthetic.generate_raw(tmp_path / "raw.h5", 10, 1.5, seed=1)
    assert not list(tmp_path.iterdir())
