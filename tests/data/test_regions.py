"""Signal region, sideband, the sideband splits, and the mjj KDE sampler."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.data import processed, regions, selection
from lhco_diffusion.data.mjj import MjjSampler
from lhco_diffusion.errors import InputError


def test_regions_partition_every_event(test_config):
    data = test_config.data
    edges = [*data.sideband, *data.signal_region]
    mjj = np.concatenate([np.linspace(1000.0, 7000.0, 5001), edges, np.nextafter(edges, 0.0)])
    signal_region = regions.signal_region_mask(mjj, data)
    sideband = regions.sideband_mask(mjj, data)
    other = ~(signal_region | sideband)
    assert not np.any(signal_region & sideband)
    np.testing.assert_array_equal(signal_region, (mjj >= 3300.0) & (mjj < 3700.0))
    np.testing.assert_array_equal(other, (mjj < 2300.0) | (mjj >= 5000.0))
    counts = regions.region_counts(mjj, data)
    assert counts == {"SR": signal_region.sum(), "SB": sideband.sum(), "other": other.sum()}
    assert sum(counts.values()) == len(mjj)


def test_regions_follow_the_configuration(test_config):
    data = test_config.data.__class__(signal_region=(3000.0, 3200.0), sideband=(2800.0, 3400.0))
    mjj = np.array([2799.0, 2800.0, 2999.0, 3000.0, 3199.0, 3200.0, 3399.0, 3400.0])
    np.testing.assert_array_equal(regions.signal_region_mask(mjj, data), [0, 0, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(regions.sideband_mask(mjj, data), [0, 1, 1, 0, 0, 1, 1, 0])


@pytest.mark.parametrize("n", [1, 7, 1000, 12345])
def test_sideband_splits_are_disjoint_complete_and_deterministic(n, test_config):
    fractions = test_config.data.sideband_fractions
    splits = regions.sideband_splits(n, fractions, seed=4)
    assert set(splits) == {"train", "test", "validation"}
    joined = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    for name, fraction in zip(regions.SPLITS, fractions):
        assert abs(len(splits[name]) - fraction * n) <= 1
    again = regions.sideband_splits(n, fractions, seed=4)
    assert all(np.array_equal(splits[name], again[name]) for name in splits)
    if n > 100:
        other = regions.sideband_splits(n, fractions, seed=5)
        assert not np.array_equal(splits["train"], other["train"])


def test_empty_sideband_sample_cannot_be_split():
    with pytest.raises(InputError, match="empty sideband"):
        regions.sideband_splits(0, (0.5, 0.1, 0.4), seed=1)


def test_region_selection_on_prepared_events(processed_file, test_config):
    events = processed.load(processed_file, npart=test_config.data.npart)
    train = selection.sideband_background(processed_file, test_config, "train")
    assert len(train) > 0 and np.all(train.label == 0)
    assert np.all(regions.sideband_mask(train.mjj, test_config.data))
    signal_region = selection.region_events(processed_file, "SR", test_config)
    assert np.all(regions.signal_region_mask(signal_region.mjj, test_config.data))
    assert signal_region.label.mean() > events.label.mean()  # the resonance sits in the SR


def test_sideband_splits_partition_the_sideband_background_of_the_file(processed_file, test_config):
    events = processed.load(processed_file)
    rows = selection.sideband_rows(processed_file, test_config.data)
    background = np.flatnonzero(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    np.testing.assert_array_equal(np.sort(np.concatenate(list(rows.values()))), background)
    held_out = selection.reference_background(processed_file, "SB", test_config)
    np.testing.assert_array_equal(held_out.mjj, events.mjj[rows["validation"]])


def test_empty_regions_are_input_errors(tmp_path, processed_file, test_config):
    events = processed.load(processed_file)
    below = tmp_path / "below.h5"
    with processed.EventWriter(below, events.npart) as writer:
        writer.append(events.select(events.mjj < 2300.0))
    with pytest.raises(InputError, match="no background event in the sideband"):
        selection.sideband_rows(below, test_config.data)
    with pytest.raises(InputError, match="no events in the SR"):
        selection.region_events(below, "SR", test_config)


@pytest.fixture(scope="module")
def sideband_mjj():
    """A falling spectrum with the signal region cut out, like sideband data."""
    mjj = 2300.0 + np.random.default_rng(0).exponential(700.0, 20_000)
    return mjj[(mjj < 3300.0) | (mjj > 3700.0)]


def test_kde_samples_lie_in_the_requested_region(sideband_mjj):
    sampler = MjjSampler.fit(sideband_mjj, bandwidth=0.05)
    mjj = sampler.sample(5000, region=(3300.0, 3700.0), seed=1)
    assert mjj.shape == (5000,)
    assert np.all((mjj >= 3300.0) & (mjj < 3700.0))
    # the falling density interpolated into the gap: more events near 3.3 TeV than near 3.7 TeV
    assert np.mean(mjj < 3500.0) > 0.55
    np.testing.assert_array_equal(mjj, sampler.sample(5000, region=(3300.0, 3700.0), seed=1))


def test_kde_with_the_paper_bandwidth_fitted_to_the_signal_region(processed_file, test_config):
    events = processed.load(processed_file)
    data = test_config.data
    sampler = MjjSampler.fit(events.mjj[regions.signal_region_mask(events.mjj, data)], data.kde_bandwidth)
    mjj = sampler.sample(2000, region=data.signal_region, seed=3)
    assert np.all(regions.signal_region_mask(mjj, data))


def test_kde_save_and_load_reproduce_the_samples(sideband_mjj, tmp_path):
    sampler = MjjSampler.fit(sideband_mjj, bandwidth=0.01)
    sampler.save(tmp_path / "kde.npz")
    loaded = MjjSampler.load(tmp_path / "kde.npz")
    assert loaded.bandwidth == 0.01
    region = (2400.0, 2600.0)
    np.testing.assert_array_equal(loaded.sample(300, region, seed=2), sampler.sample(300, region, seed=2))


def test_kde_rejects_hopeless_regions_and_bad_input(sideband_mjj, tmp_path):
    sampler = MjjSampler.fit(sideband_mjj, bandwidth=0.001)
    with pytest.raises(InputError, match="almost no probability in 9000-9500 GeV"):
        sampler.sample(10, region=(9000.0, 9500.0), seed=1)
    with pytest.raises(InputError, match="empty sample"):
        MjjSampler.fit(np.array([]), bandwidth=0.001)
    with pytest.raises(InputError, match="NaN"):
        MjjSampler.fit(np.array([3000.0, np.nan]), bandwidth=0.001)
    with pytest.raises(InputError, match="does not exist"):
        MjjSampler.load(tmp_path / "absent.npz")
    (tmp_path / "other.npz").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not an mjj density file"):
        MjjSampler.load(tmp_path / "other.npz")
