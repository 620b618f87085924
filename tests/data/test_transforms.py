"""Model-space transforms: fit on sideband training data, exact inverse, JSON statistics."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from lhco_diffusion.data import kinematics, processed, regions, transforms
from lhco_diffusion.data.transforms import ModelInputs
from lhco_diffusion.data.kinematics import wrap_phi
from lhco_diffusion.errors import InputError


@pytest.fixture(scope="module")
def events(processed_file):
    return processed.load(processed_file)


@pytest.fixture(scope="module")
def stats(events, test_config):
    training = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    return transforms.fit(training, test_config.transforms, sideband=test_config.data.sideband)


def _back(stats, inputs, events, mask=None):
    mask = inputs.mask if mask is None else mask
    return transforms.to_physical(stats, inputs.particles, inputs.jets, events.mjj, mask,
                                  transforms.azimuth(events.jets))


def test_round_trip_is_exact(events, stats):
    inputs = transforms.to_model(stats, events)
    back = _back(stats, inputs, events)
    np.testing.assert_allclose(back.particles, events.particles, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(back.mask, events.mask)
    mjj = transforms.mjj_from_condition(stats, inputs.condition)
    np.testing.assert_allclose(mjj, events.mjj, rtol=1e-5)
    processed.validate(back)


def test_model_inputs_shapes_padding_and_standardisation(events, stats, test_config):
    inputs = transforms.to_model(stats, events)
    n, npart = len(events), events.npart
    assert inputs.particles.shape == (n, 2, npart, 3) and inputs.jets.shape == (n, 2, 5)
    assert inputs.condition.shape == (n, 1) and inputs.mask.shape == (n, 2, npart)
    arrays = (inputs.particles, inputs.jets, inputs.condition, inputs.mask)
    assert all(array.dtype == np.float32 for array in arrays)
    np.testing.assert_array_equal(inputs.mask, events.mask.astype(np.float32))
    assert np.all(inputs.particles[inputs.mask == 0] == 0)
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    training = transforms.to_model(stats, sideband)
    real = training.particles[training.mask > 0]
    np.testing.assert_allclose(real.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(real.std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(training.jets.reshape(-1, 5).mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(training.jets.reshape(-1, 5).std(axis=0), 1.0, atol=1e-4)
    assert np.all(np.abs(training.condition) <= 1.0)


def test_features_follow_the_design(events, stats):
    """Model-space jets de-standardised are (log(pT/mjj), eta, phi - azimuth, log(m/mjj), N)."""
    inputs = transforms.to_model(stats, events)
    jets = inputs.jets.astype(np.float64) * stats.jet_std + stats.jet_mean
    expected = np.stack([
        np.log(events.jets[..., 0] / events.mjj[:, None]), events.jets[..., 1],
        wrap_phi(events.jets[..., 2] - transforms.azimuth(events.jets)[:, None]),
        np.log(events.jets[..., 3] / events.mjj[:, None]), events.jets[..., 4],
    ], axis=-1)
    np.testing.assert_allclose(jets, expected, rtol=1e-5, atol=1e-5)
    particles = inputs.particles.astype(np.float64) * stats.particle_std + stats.particle_mean
    mask = events.mask
    np.testing.assert_allclose(particles[mask][:, 0], np.log1p(-events.particles[mask][:, 0]), atol=1e-5)


def test_condition_maps_the_sideband_edges_to_minus_one_and_one(stats, test_config):
    low, high = test_config.data.sideband
    mjj = np.array([low, np.sqrt(low * high), high])
    np.testing.assert_allclose(transforms.condition(stats, mjj)[:, 0], [-1.0, 0.0, 1.0], atol=1e-6)
    edges = transforms.mjj_from_condition(stats, [[-1.0], [1.0]])
    np.testing.assert_allclose(edges, [low, high], rtol=1e-12)


def test_to_physical_takes_n_constituents_from_the_mask(events, stats):
    inputs = transforms.to_model(stats, events.select(slice(0, 10)))
    mask = inputs.mask.copy()
    mask[:, :, 3:] = 0
    back = _back(stats, inputs, events.select(slice(0, 10)), mask)
    np.testing.assert_array_equal(back.jets[..., 4], np.minimum(events.jets[:10, :, 4], 3))
    assert np.all(back.particles[:, :, 3:] == 0)


def test_extreme_model_values_stay_physical(stats):
    """Generated particles outside the training range still give 0 < pT_rel < 1 where the mask is set."""
    particles = np.full((1, 2, 4, 3), 50.0, np.float32)
    particles[0, 1] = -50.0
    jets, mjj, mask = np.zeros((1, 2, 5)), np.array([3500.0]), np.ones((1, 2, 4))
    back = transforms.to_physical(stats, particles, jets, mjj, mask, np.zeros(1))
    assert np.all(back.particles[..., 0] > 0) and np.all(back.particles[..., 0] < 1)
    processed.validate(back)


def test_jets_are_described_in_the_event_frame(events, stats):
    """A rotation of the whole event about the beam leaves the model inputs unchanged; the first
    jet sits at phi = -pi/2 and a back-to-back partner at +pi/2."""
    rotated = events.select(slice(None))
    rotated.jets = rotated.jets.copy()
    rotated.jets[..., 2] = (rotated.jets[..., 2] + 1.234 + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(transforms.to_model(stats, rotated).jets, transforms.to_model(stats, events).jets,
                               atol=1e-4)
    frame = transforms._jet_features(events.jets, events.mjj)[..., 2]
    np.testing.assert_allclose(frame[:, 0], -np.pi / 2, atol=1e-6)
    back_to_back = np.abs(np.abs(events.jets[:, 0, 2] - events.jets[:, 1, 2]) - np.pi) < 0.1
    np.testing.assert_allclose(frame[back_to_back, 1], np.pi / 2, atol=0.11)


def test_stats_json_round_trip(stats, tmp_path):
    path = tmp_path / "stats.json"
    stats.save(path)
    loaded = transforms.Stats.load(path)
    for name in ("jet_mean", "jet_std", "particle_mean", "particle_std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(stats, name))
    assert (loaded.log_mjj_min, loaded.log_mjj_max, loaded.pt_rel_epsilon) == (
        stats.log_mjj_min, stats.log_mjj_max, stats.pt_rel_epsilon)


def test_bad_statistics_files(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        transforms.Stats.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"jet_mean": [0]}')
    with pytest.raises(InputError, match="not a transform-statistics JSON file"):
        transforms.Stats.load(tmp_path / "bad.json")


def test_fit_on_no_events_is_an_input_error(events, test_config):
    with pytest.raises(InputError, match="empty"):
        transforms.fit(events.select(slice(0, 0)), test_config.transforms, test_config.data.sideband)


def test_log_pt_rel_transform_spreads_soft_particles_and_inverts_exactly(events, test_config):
    """transforms.pt_rel_transform=log: the model sees log(pT_rel), standardised, and the stored
    statistics invert it; soft particles stay resolved instead of collapsing onto log(1) = 0."""
    settings = test_config.transforms.__class__(pt_rel_transform="log")
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    log_stats = transforms.fit(sideband, settings,
                               sideband=test_config.data.sideband)
    assert log_stats.pt_rel_transform == "log"
    inputs = transforms.to_model(log_stats, events)
    real = inputs.mask > 0
    expected = (np.log(events.particles[..., 0][real]) - log_stats.particle_mean[0]) / log_stats.particle_std[0]
    np.testing.assert_allclose(inputs.particles[..., 0][real], expected, rtol=1e-4, atol=1e-4)
    back = _back(log_stats, inputs, events)
    np.testing.assert_allclose(back.particles, events.particles, rtol=1e-5, atol=1e-5)
    soft = events.particles[..., 0][real] < 0.01
    assert soft.any()
    assert np.std(inputs.particles[..., 0][real][soft]) > 0.2  # paper's transform: ~0.01 / std


def test_per_jet_statistics_standardise_each_jet_and_invert_exactly(events, test_config, tmp_path):
    """transforms.jet_statistics=per_jet: each of the ordered jets has unit width on its own, the
    partner's small deviation from back to back is blown up to unit scale, the leading jet's phi
    (fixed by the event rotation) is reproduced exactly whatever the network outputs, and a
    generated multiplicity is read with its own jet's statistics."""
    settings = test_config.transforms.__class__(jet_statistics="per_jet")
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    per_jet = transforms.fit(sideband, settings, sideband=test_config.data.sideband)
    pooled = transforms.fit(sideband, test_config.transforms, sideband=test_config.data.sideband)
    assert per_jet.jet_mean.shape == per_jet.jet_std.shape == (2, 5)
    training = transforms.to_model(per_jet, sideband)
    np.testing.assert_allclose(training.jets.mean(axis=0), 0.0, atol=1e-4)
    varying = per_jet.jet_std > transforms.MIN_STD
    np.testing.assert_allclose(training.jets.std(axis=0)[varying], 1.0, atol=1e-4)
    assert not varying[0, 2] and per_jet.jet_mean[0, 2] == pytest.approx(-0.5 * np.pi)
    assert per_jet.jet_std[1, 2] < 0.2 * pooled.jet_std[2]

    inputs = transforms.to_model(per_jet, events)
    back = _back(per_jet, inputs, events)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)
    noisy = inputs.jets.copy()
    noisy[:, 0, 2] += 0.5
    leading_phi = _back(per_jet, ModelInputs(inputs.particles, noisy, inputs.condition, inputs.mask),
                        events).jets[:, 0, 2]
    np.testing.assert_allclose(leading_phi, events.jets[:, 0, 2], atol=1e-5)

    per_jet.save(tmp_path / "stats.json")
    restored = transforms.Stats.load(tmp_path / "stats.json")
    np.testing.assert_array_equal(restored.jet_std, per_jet.jet_std)


@pytest.fixture(scope="module")
def closure_stats(events, test_config):
    settings = test_config.transforms.__class__(pt_rel_transform="log", constituent_closure=True)
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    return transforms.fit(sideband, settings, sideband=test_config.data.sideband)


def _closure_by_loops(events):
    """Each jet's pT_rel sum and pT-weighted (deta, dphi), one jet at a time: (N, 2), (N, 2, 2)."""
    pt_sum, centroid = np.zeros((len(events), 2)), np.zeros((len(events), 2, 2))
    for event, jet in np.ndindex(len(events), 2):
        real = events.particles[event, jet][events.mask[event, jet]]
        pt_sum[event, jet] = real[:, 0].sum()
        centroid[event, jet] = (real[:, 0, None] * real[:, 1:]).sum(axis=0) / real[:, 0].sum()
    return pt_sum, centroid


def test_constituent_closure_moves_the_particle_sums_to_the_jets_and_inverts_exactly(events, closure_stats):
    """transforms.constituent_closure: each jet gains (log S, c_eta, c_phi) of its stored particles,
    which the model sees normalised (sum 1, centroid 0); the round trip stays exact."""
    assert closure_stats.n_jet_features == 8 and closure_stats.constituent_closure
    inputs = transforms.to_model(closure_stats, events)
    assert inputs.jets.shape == (len(events), 2, 8)
    features = inputs.jets * closure_stats.jet_std + closure_stats.jet_mean
    pt_sum, centroid = _closure_by_loops(events)
    np.testing.assert_allclose(features[..., 5], np.log(pt_sum), atol=1e-5)
    np.testing.assert_allclose(features[..., 6:], centroid, atol=1e-6)
    assert np.any(pt_sum < 0.99) and np.any(np.abs(centroid) > 1e-3)  # the closure is not trivial

    seen = inputs.particles.astype(np.float64) * closure_stats.particle_std + closure_stats.particle_mean
    seen[..., 0] = np.exp(seen[..., 0])  # the particles the network sees, log(pT_rel) undone
    seen_sum, seen_centroid = transforms.closure(seen, inputs.mask > 0)
    np.testing.assert_allclose(seen_sum, 1.0, atol=1e-5)
    np.testing.assert_allclose(seen_centroid, 0.0, atol=1e-6)

    back = _back(closure_stats, inputs, events)
    np.testing.assert_allclose(back.particles, events.particles, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)
    processed.validate(back)


def test_generated_clouds_are_projected_onto_their_jets_closure(events, closure_stats):
    """Whatever the particle network outputs, each jet's particles come out with the pT_rel sum
    and centroid its jet features carry; padded slots stay empty."""
    inputs = transforms.to_model(closure_stats, events)
    rng = np.random.default_rng(4)
    particles = (inputs.particles + 0.5 * rng.standard_normal(inputs.particles.shape)) * inputs.mask[..., None]
    jets = inputs.jets + rng.standard_normal(inputs.jets.shape)
    back = _back(closure_stats, ModelInputs(particles, jets, inputs.condition, inputs.mask), events)
    features = jets * closure_stats.jet_std + closure_stats.jet_mean
    pt_sum, centroid = _closure_by_loops(back)
    unclipped = back.particles[..., 0].max(axis=-1) < 1.0 - closure_stats.pt_rel_epsilon
    assert unclipped.mean() > 0.99
    np.testing.assert_allclose(pt_sum[unclipped], np.exp(features[..., 5])[unclipped], rtol=1e-6)  # float32 events
    np.testing.assert_allclose(centroid[unclipped], features[..., 6:][unclipped], atol=1e-6)
    assert np.all(back.particles[~back.mask] == 0)
    assert not np.allclose(back.particles, events.particles, atol=1e-3)  # the noise did change the clouds


def test_eta_gap_bound_is_the_separation_of_two_jets_at_the_threshold():
    """Two massless back-to-back jets of pT T with eta separation d have mjj = 2 T cosh(d / 2):
    B(mjj) is d plus the fixed offset, and the offset alone below mjj = 2 T."""
    separation = np.array([0.0, 0.8, 1.7, 2.5])
    jets = np.zeros((4, 2, 5))
    jets[..., 0], jets[:, 0, 1], jets[:, 1, 1] = 1200.0, 0.5 * separation + 0.3, -0.5 * separation + 0.3
    jets[:, 1, 2] = np.pi
    mjj = kinematics.dijet_mass(jets)
    np.testing.assert_allclose(mjj, 2400.0 * np.cosh(separation / 2), rtol=1e-9)
    np.testing.assert_allclose(transforms.eta_gap_bound(mjj, 1200.0), separation + transforms.ETA_GAP_OFFSET,
                               atol=1e-6)
    assert transforms.eta_gap_bound(np.array([1500.0]), 1200.0)[0] == transforms.ETA_GAP_OFFSET


def test_eta_gap_carries_boost_and_scaled_separation_and_inverts_exactly(events, test_config, tmp_path):
    """transforms.jet_eta=gap: each event reflected in eta so that its leading jet is the forward
    one, the leading jet's eta slot holds the jets' mean eta, the partner's their difference over
    B(mjj); the round trip with the events' own reflections is exact, and the choice survives the JSON."""
    settings = test_config.transforms.__class__(jet_statistics="per_jet", jet_eta="gap")
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    stats = transforms.fit(sideband, settings, test_config.data.sideband, min_leading_jet_pt=1000.0)
    assert stats.eta_gap_pt == 1000.0
    inputs = transforms.to_model(stats, events)
    features = inputs.jets * stats.jet_std + stats.jet_mean
    eta = events.jets[..., 1]
    sign = np.where(eta[:, 0] < eta[:, 1], -1.0, 1.0)  # reflected so that the leading jet is forward
    np.testing.assert_allclose(features[:, 0, 1], sign * eta.mean(axis=1), atol=1e-5)
    bound = 2 * np.arccosh(np.maximum(events.mjj / 2000.0, 1)) + 0.2
    np.testing.assert_allclose(features[:, 1, 1], np.abs(eta[:, 0] - eta[:, 1]) / bound, atol=1e-5)

    stats.save(tmp_path / "stats.json")
    restored = transforms.Stats.load(tmp_path / "stats.json")
    mirror = transforms.mirrored(restored, events.jets)
    back = transforms.to_physical(restored, inputs.particles, inputs.jets, events.mjj, inputs.mask,
                                  transforms.azimuth(events.jets), mirror)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.particles, events.particles, rtol=1e-5, atol=1e-5)
    unreflected = _back(restored, inputs, events)  # as the model sees them: every event's gap >= 0
    np.testing.assert_allclose(unreflected.jets[mirror][..., 1], -events.jets[mirror][..., 1], atol=1e-5)
    np.testing.assert_allclose(unreflected.particles[mirror][..., 1], -events.particles[mirror][..., 1], atol=1e-5)
    np.testing.assert_allclose(unreflected.particles[..., [0, 2]], events.particles[..., [0, 2]], atol=1e-5)
    assert np.all(unreflected.jets[:, 0, 1] >= unreflected.jets[:, 1, 1])
    assert 0.3 < mirror.mean() < 0.7
    with pytest.raises(InputError, match="threshold"):
        transforms.fit(sideband, settings, test_config.data.sideband, min_leading_jet_pt=0.0)


def test_selection_gap_bound_puts_the_scaled_leading_jet_at_the_threshold():
    """Massless back-to-back jets of pT ratio b have mjj^2 = 2 b pT_1^2 (cosh d + 1): at the bound the
    event scaled to its mjj has pT_1 = T, which for b = 1 is B(mjj) without the offset. Massive
    jets at an angle: the jets placed at the bound and scaled to mjj have their first jet at T
    exactly; 0 where even zero separation leaves it below T."""
    b = np.array([1.0, 1.0, 0.6, 0.9])
    mjj = np.array([2600.0, 3500.0, 3500.0, 5000.0])
    jets = np.zeros((4, 2, 4))
    jets[:, 0, 0], jets[:, 1, 0], jets[:, 1, 2] = 1500.0, 1500.0 * b, np.pi
    jets[:, :, 1] = [0.9, -0.3]  # a separation the bound ignores (it takes the boost 0.4 instead)
    np.testing.assert_allclose(transforms.selection_gap_bound(jets, np.full(4, 0.4), mjj, 1200.0),
                               np.arccosh((mjj / 1200.0) ** 2 / (2 * b) - 1), rtol=1e-12)
    np.testing.assert_allclose(transforms.selection_gap_bound(jets[:2], np.full(2, 0.4), mjj[:2], 1200.0),
                               transforms.eta_gap_bound(mjj[:2], 1200.0) - transforms.ETA_GAP_OFFSET, rtol=1e-12)

    massive = np.array([[[1700.0, 0.9, 0.1, 250.0], [1100.0, -0.2, 2.9, 90.0]]] * 2)
    mjj = np.array([3400.0, 1800.0])
    bound = transforms.selection_gap_bound(massive, massive[:, :, 1].mean(axis=1), mjj, 1200.0)
    assert bound[0] > 0 and bound[1] == 0.0
    at_bound = massive[:1].copy()
    at_bound[0, :, 1] = massive[0, :, 1].mean() + 0.5 * bound[0] * np.array([1.0, -1.0])
    assert kinematics.scaled_to_dijet_mass(at_bound, mjj[:1])[0, 0, 0] == pytest.approx(1200.0, rel=1e-10)


def test_selection_gap_inverts_exactly_and_every_generated_event_passes_the_selection(events, test_config):
    """transforms.jet_eta=selection: the boost as under gap, the partner's slot the logit of the
    separation over the event's own bound; the round trip is exact, and any model-space jets at all,
    scaled to their mjj, have a leading jet above the threshold (the gap transform cannot promise it)."""
    threshold = test_config.data.min_leading_jet_pt
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    settings = {name: test_config.transforms.__class__(jet_statistics="per_jet", jet_eta=name)
                for name in ("gap", "selection")}
    stats = {name: transforms.fit(sideband, value, test_config.data.sideband, threshold)
             for name, value in settings.items()}
    assert stats["selection"].eta_gap == "selection" and stats["gap"].eta_gap == "scaled"
    inputs = transforms.to_model(stats["selection"], events)
    features = inputs.jets * stats["selection"].jet_std + stats["selection"].jet_mean
    mirror = transforms.mirrored(stats["selection"], events.jets)
    reflected = events.jets.astype(np.float64)
    reflected[mirror, :, 1] *= -1  # the leading jet forward, as the model sees the events
    bound = transforms.selection_gap_bound(reflected, reflected[..., 1].mean(axis=1), events.mjj, threshold)
    fraction = (reflected[:, 0, 1] - reflected[:, 1, 1]) / bound
    assert np.all((fraction > 0) & (fraction < 1))
    np.testing.assert_allclose(features[:, 1, 1], np.log(fraction / (1 - fraction)), atol=1e-4)
    back = transforms.to_physical(stats["selection"], inputs.particles, inputs.jets, events.mjj, inputs.mask,
                                  transforms.azimuth(events.jets), mirror)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)

    rng = np.random.default_rng(3)
    generated = rng.standard_normal(inputs.jets.shape).astype(np.float32)
    physical = {name: transforms.to_physical(stats[name], inputs.particles, generated, events.mjj, inputs.mask,
                                             np.zeros(len(events))) for name in stats}
    leading_pt = {name: kinematics.scaled_to_dijet_mass(value.jets, events.mjj)[..., 0].max(axis=1)
                  for name, value in physical.items()}
    selected = physical["selection"].jets
    admissible = transforms.selection_gap_bound(selected, selected[..., 1].mean(axis=1), events.mjj, threshold) > 0
    assert admissible.mean() > 0.98  # the rest pass at no separation (a heavy jet, a small |delta phi|)
    assert np.all(leading_pt["selection"][admissible] > threshold * (1 - 1e-6))  # float32 events
    assert np.mean(leading_pt["gap"][admissible] < threshold) > 0.02


def test_asinh_closure_sum_sets_whole_jets_apart_and_inverts_exactly(events, closure_stats, test_config):
    """transforms.closure_sum: asinh. A jet stored whole (fewer than P particles) has S >= 1, as a
    scalar pT sum is at least the pT of the vector sum; one cut at P mostly has S < 1. Under log S
    the whole jets are a spike under a hundredth of the feature's width, which a diffusion model
    smears; under asinh((S - 1) / 1e-4) they spread over a third of it and more. The round trip
    stays exact, and a generated feature beyond the asinh's range comes back as the floor S, not a
    negative one (the pT_rel clip in to_physical would hide that, so the inverse is checked alone);
    one far above it as the largest S, not an overflow to infinity that made the padding NaN."""
    settings = test_config.transforms.__class__(pt_rel_transform="log", constituent_closure=True,
                                                closure_sum="asinh")
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    stats = transforms.fit(sideband, settings, sideband=test_config.data.sideband)
    assert stats.closure_sum == "asinh" and closure_stats.closure_sum == "log"
    pt_sum, _ = _closure_by_loops(events)
    whole = events.mask.sum(axis=-1) < events.mask.shape[-1]
    assert whole.any() and (~whole).any() and np.all(pt_sum[whole] >= 1.0)

    inputs = {name: transforms.to_model(value, events) for name, value in (("log", closure_stats), ("asinh", stats))}
    features = inputs["asinh"].jets * stats.jet_std + stats.jet_mean
    np.testing.assert_allclose(features[..., 5], np.arcsinh((pt_sum - 1.0) / 1e-4), atol=2e-3)  # float32 S
    widths = {name: np.subtract(*np.quantile(value.jets[..., 5][whole], [0.75, 0.25]))
              for name, value in inputs.items()}  # interquartile, in units of the feature's width
    assert widths["log"] < 0.01 and widths["asinh"] > 0.3

    back = _back(stats, inputs["asinh"], events)
    np.testing.assert_allclose(back.particles, events.particles, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)
    for kind in ("log", "asinh"):
        np.testing.assert_allclose(transforms.closure_sum_of_feature(
            transforms.closure_sum_feature(pt_sum, kind), kind), pt_sum, rtol=1e-12)
    assert transforms.closure_sum_of_feature(-50.0, "asinh") == transforms.MIN_PT_SUM  # 1 + 1e-4 sinh(-50) < 0
    for kind in ("log", "asinh"):  # a generated outlier, sinh or exp of which overflows, is cut to the largest sum
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert transforms.closure_sum_of_feature(1.0e4, kind) == pytest.approx(transforms.MAX_PT_SUM, rel=1e-9)

    outlier = inputs["asinh"]
    outlier.jets[:3, 0, 5] = 1.0e4  # three leading jets whose generated sum feature is far off the scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generated = _back(stats, outlier, events)
    assert np.all(np.isfinite(generated.particles))
    assert np.all(generated.particles[~generated.mask] == 0)  # padding stays zero, not NaN


def test_asinh_particle_angles_resolve_narrow_jet_cores_and_invert_exactly(events, closure_stats, test_config):
    """transforms.particle_angles: asinh. Each particle moves along its direction from its jet's
    centroid to the distance asinh(dR / 0.01). With one width for every particle, the narrow jets'
    particles (the fifth with the smallest m/pT) sit well inside the unit scale; compressed, they
    meet the network at close to it. The round trip stays exact, the map is exact to invert on its
    own (the centre included), and a generated distance beyond pi comes back cut to pi."""
    settings = test_config.transforms.__class__(pt_rel_transform="log", constituent_closure=True,
                                                particle_angles="asinh")
    sideband = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    stats = transforms.fit(sideband, settings, sideband=test_config.data.sideband)
    assert stats.particle_angles == "asinh" and closure_stats.particle_angles == "linear"
    inputs = {"linear": transforms.to_model(closure_stats, events), "asinh": transforms.to_model(stats, events)}

    _, centroid = _closure_by_loops(events)
    offsets = events.particles[..., 1:] - centroid[:, :, None, :]
    features = (inputs["asinh"].particles * stats.particle_std + stats.particle_mean)[..., 1:]
    real = events.mask
    distance = np.hypot(offsets[..., 0], offsets[..., 1])[real]
    np.testing.assert_allclose(np.hypot(features[..., 0], features[..., 1])[real], np.arcsinh(distance / 0.01),
                               rtol=1e-4, atol=1e-3)
    moved = distance > 1e-3
    cosine = np.sum(features[real] * offsets[real], axis=-1)[moved] / (
        np.hypot(*np.moveaxis(features[real], -1, 0))[moved] * distance[moved])
    np.testing.assert_allclose(cosine, 1.0, atol=1e-4)

    mass_over_pt = events.jets[..., 3] / events.jets[..., 0]
    narrow = (mass_over_pt < np.quantile(mass_over_pt, 0.2))[..., None] & real
    core = {kind: np.median(np.hypot(value.particles[..., 1], value.particles[..., 2])[narrow])
            for kind, value in inputs.items()}
    assert core["asinh"] > 3.0 * core["linear"]

    back = _back(stats, inputs["asinh"], events)
    np.testing.assert_allclose(back.particles, events.particles, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.jets, events.jets, rtol=1e-5, atol=1e-5)
    angles = np.concatenate([np.zeros((1, 2)), np.random.default_rng(5).normal(0.0, 0.3, (1000, 2))])
    np.testing.assert_allclose(transforms.angles_of_features(transforms.angle_features(angles, "asinh"), "asinh"),
                               angles, rtol=1e-12, atol=1e-15)
    outlier = transforms.angles_of_features(np.array([[30.0, 40.0]]), "asinh")  # distance 50: sinh(50) / 100 rad
    np.testing.assert_allclose(outlier, [[0.6 * np.pi, 0.8 * np.pi]], rtol=1e-12)
