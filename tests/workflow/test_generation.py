"""Generated events obey the data's selection: failing events are drawn again at their mjj."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.data.processed import Events
from lhco_diffusion.workflow import generation

CUT = 1200.0  # GeV


def _maker(calls: list, always_failing=()):
    """make(rows, seed): events at mjj = 3000 GeV + row whose leading-jet pT is uniform in
    1000-1600 GeV, drawn from the seed (so redraws differ); rows in ``always_failing`` never pass."""
    def make(rows, seed):
        calls.append((np.array(rows), seed))
        rng = np.random.default_rng([*np.ravel(seed), 99])
        pt = rng.uniform(1000.0, 1600.0, len(rows))
        pt[np.isin(rows, always_failing)] = 900.0
        jets = np.zeros((len(rows), 2, 5))
        jets[:, 0, 0], jets[:, 1, 0] = pt, 0.9 * pt
        return Events(np.ones((len(rows), 2, 4, 3)), jets, np.asarray(rows, float) + 3000.0, np.zeros(len(rows)))
    return make


def test_failing_events_are_drawn_again_and_passing_ones_are_kept():
    calls = []
    make = _maker(calls)
    first = make(np.arange(500), (4, 2))
    events = generation.selected_events(make, 500, (4, 2), CUT)
    assert np.all(generation.passes_selection(events, CUT))
    kept = generation.passes_selection(first, CUT)
    assert 0.5 < kept.mean() < 0.8  # the test draws fail often enough to need several rounds
    np.testing.assert_array_equal(events.jets[kept], first.jets[kept])
    np.testing.assert_array_equal(events.mjj, np.arange(500) + 3000.0)  # every event stays at its mjj
    redrawn = [rows for rows, _ in calls[2:]]
    assert len(redrawn) >= 2 and all(len(b) < len(a) for a, b in zip(redrawn, redrawn[1:]))
    assert [seed for _, seed in calls[2:4]] == [(4, 2, 1), (4, 2, 2)]


def test_the_same_seed_gives_the_same_selected_events():
    one, two = (generation.selected_events(_maker([]), 200, 7, CUT) for _ in range(2))
    np.testing.assert_array_equal(one.jets, two.jets)


def test_events_that_never_pass_are_kept_with_a_warning():
    calls = []
    with pytest.warns(generation.SelectionWarning, match="2 of 50 generated events"):
        events = generation.selected_events(_maker(calls, always_failing=(3, 17)), 50, 1, CUT, max_redraws=5)
    assert len(events) == 50 and len(calls) == 6
    np.testing.assert_array_equal(np.flatnonzero(~generation.passes_selection(events, CUT)), [3, 17])


@pytest.mark.parametrize("jet_eta, eta_gap", [("gap", "scaled"), ("selection", "selection")])
def test_a_generator_with_the_closure_and_the_eta_gap_trains_reloads_and_generates(test_config, processed_file, tmp_path,
                                                                                   jet_eta, eta_gap):
    """transforms.constituent_closure and transforms.jet_eta=gap or selection end to end: 8 model
    features per jet and the eta-gap threshold and kind from training through the checkpoint to
    generation, which gives valid events, reflected in eta at random (both jets' order in eta occurs)."""
    from lhco_diffusion import config as config_module
    from lhco_diffusion.data import processed
    from lhco_diffusion.workflow import checkpoints, training

    config = config_module.from_dict(test_config.to_dict(), "test.yaml", [
        f"paths.run_dir={tmp_path}", "training.steps_per_epoch=4", "training.epochs=1",
        "transforms.constituent_closure=true", f"transforms.jet_eta={jet_eta}"])
    checkpoint = checkpoints.load(training.train(config)["best"])
    assert checkpoint.stats.n_jet_features == 8
    assert checkpoint.stats.eta_gap_pt == config.data.min_leading_jet_pt and checkpoint.stats.eta_gap == eta_gap
    events = generation.generate_events(checkpoint.model, checkpoint.stats, np.linspace(3300.0, 3700.0, 40),
                                        config.data.npart, "dpm2m", 4, seed=2)
    processed.validate(events)
    assert np.all(np.isfinite(events.particles)) and np.all(events.particles[..., 0][events.mask] > 0)
    leading_forward = events.jets[:, 0, 1] > events.jets[:, 1, 1]
    assert 0 < leading_forward.sum() < len(events)


def test_particles_given_jets_keep_the_jets_and_draw_new_particles(test_config, processed_file, trained_checkpoint):
    """The particle model alone: each event keeps its jets, mjj and multiplicities (to float
    rounding through the model-space round trip), and gets new, valid, pT-ordered particles that
    the seed fixes."""
    from lhco_diffusion.data import processed, selection
    from lhco_diffusion.workflow import checkpoints

    checkpoint = checkpoints.load(trained_checkpoint)
    events = selection.reference_background(processed_file, "SR", test_config).select(slice(0, 30))
    npart = test_config.data.npart
    made = generation.particles_given_jets(checkpoint.model, checkpoint.stats, events, npart, "dpm2m", 4, seed=5)
    processed.validate(made)
    np.testing.assert_array_equal(made.mjj, events.mjj)
    np.testing.assert_allclose(made.jets, events.jets, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(made.mask, events.mask)
    pt_rel = made.particles[..., 0]
    assert np.all(pt_rel[made.mask] > 0) and np.all(made.particles[~made.mask] == 0)
    assert np.all(np.diff(pt_rel, axis=-1) <= 0)
    assert np.abs(made.particles - events.particles)[made.mask].max() > 1e-2
    again = generation.particles_given_jets(checkpoint.model, checkpoint.stats, events, npart, "dpm2m", 4, seed=5)
    np.testing.assert_array_equal(again.particles, made.particles)
