"""Event log-likelihoods of the trained diffusion models, and python -m lhco_diffusion.likelihood.

Tolerance of the invariance tests: relative 2e-3 of |log p| (~0.3 nat for the ~150-nat
particle clouds here, 0.02 nat per particle in the score). The networks are permutation-
equivariant and blind to padding to float precision (tests/models/test_diffusion.py, 1e-5 on v), but
RK45's adaptive step sequence reacts to float rounding: two solves of the same density agree to
the ODE's global error at the default atol 5e-5 / rtol 1e-4, measured at 1e-4 to 5e-4 relative
with the tiny trained models (a 1e-4 tolerance would test the step-size controller, not the
likelihood). The bugs these tests look for move log p by nats: a padded slot counted as a
dimension by 0.9 nat per feature, a position-dependent network by the probe-noise scale.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from lhco_diffusion.commands import likelihood as likelihood_command
from lhco_diffusion.solvers.likelihood import anomaly_score
from lhco_diffusion.workflow import checkpoints, likelihood
from lhco_diffusion.data import processed
from lhco_diffusion.data.processed import Events
from conftest import ROOT

RELATIVE = 2.0e-3


def assert_same_log_p(actual, expected):
    error = np.abs(np.asarray(actual) - expected) / np.maximum(np.abs(expected), 1.0)
    assert error.max() < RELATIVE, f"worst relative difference {error.max():.1e}"


@pytest.fixture(scope="module")
def checkpoint(trained_checkpoint):
    return checkpoints.load(trained_checkpoint)


@pytest.fixture(scope="module")
def events(test_config, processed_file) -> Events:
    """Two events, each with a jet that has fewer particles than slots (the synthetic jets mostly
    fill all P = 16)."""
    events = processed.load(processed_file, npart=test_config.data.npart)
    partly_padded = np.nonzero(events.mask.sum(axis=-1).min(axis=-1) < events.npart)[0]
    assert len(partly_padded) >= 2
    return events.select(partly_padded[:2])


@pytest.fixture(scope="module")
def reference(checkpoint, events) -> dict:
    """The events' likelihoods with the exact divergence."""
    return likelihood.event_log_likelihood(checkpoint.model, checkpoint.stats, events, exact=True)


@pytest.mark.slow  # exact divergence, ~800 network evaluations per solve
def test_permuting_the_particles_of_a_jet_leaves_log_p_unchanged(checkpoint, events, reference):
    rng = np.random.default_rng(3)
    particles = events.particles.copy()
    for event, jet in np.ndindex(len(events), 2):
        n = events.mask[event, jet].sum()  # the real particles come first; the padding stays last
        particles[event, jet, :n] = particles[event, jet, rng.permutation(n)]
    assert not np.array_equal(particles, events.particles)
    permuted = Events(particles, events.jets, events.mjj, events.label)
    result = likelihood.event_log_likelihood(checkpoint.model, checkpoint.stats, permuted, exact=True)
    assert_same_log_p(result["log_p_particles"], reference["log_p_particles"])
    np.testing.assert_array_equal(result["log_p_jets"], reference["log_p_jets"])


@pytest.mark.slow
def test_extra_padding_slots_leave_log_p_unchanged(checkpoint, events, reference):
    padded = Events(np.pad(events.particles, ((0, 0), (0, 0), (0, 3), (0, 0))), events.jets, events.mjj,
                    events.label)
    result = likelihood.event_log_likelihood(checkpoint.model, checkpoint.stats, padded, exact=True)
    assert_same_log_p(result["log_p_particles"], reference["log_p_particles"])
    np.testing.assert_array_equal(result["n_constituents"], reference["n_constituents"])


def test_a_jet_without_particles_is_refused(checkpoint, events):
    from lhco_diffusion.errors import InputError

    empty = events.particles.copy()
    empty[0, 1] = 0.0
    with pytest.raises(InputError, match="without particles"):
        likelihood.event_log_likelihood(checkpoint.model, checkpoint.stats,
                                        Events(empty, events.jets, events.mjj, events.label), exact=True)


def _args(test_config, checkpoint, input_file, output, *extra):
    return ["--config", str(ROOT / "configs" / "test.yaml"), "--set", f"paths.cache_dir={test_config.paths.cache_dir}",
            "--checkpoint", str(checkpoint), "--input", str(input_file), "--output", str(output), "--quiet", *extra]


def test_the_command_line_writes_log_likelihoods_and_scores(test_config, processed_file, trained_checkpoint,
                                                           tmp_path):
    output = tmp_path / "likelihood.h5"
    loose = ["--set", "likelihood.atol=1e-2", "--set", "likelihood.rtol=1e-2"]  # shapes, not accuracy
    assert likelihood_command.main(_args(test_config, trained_checkpoint, processed_file, output, "--hutchinson",
                                 "--limit", "2", "--batch-size", "1", *loose)) == 0
    inputs = processed.load(processed_file, 0, 2)
    with h5py.File(output, "r") as file:
        shapes = {name: file[name].shape for name in file}
        values = {name: file[name][()] for name in file}
        attrs = dict(file.attrs)
    assert shapes == {"log_p_jets": (2,), "log_p_particles": (2, 2), "n_constituents": (2, 2), "score": (2,),
                      "mjj": (2,), "label": (2,)}
    assert all(np.all(np.isfinite(value)) for value in values.values())
    np.testing.assert_array_equal(values["mjj"], inputs.mjj)
    np.testing.assert_array_equal(values["label"], inputs.label)
    np.testing.assert_array_equal(values["n_constituents"], inputs.mask.sum(axis=-1))
    np.testing.assert_allclose(values["score"], anomaly_score(
        values["log_p_jets"], values["log_p_particles"], values["n_constituents"]))
    assert not attrs["exact"] and attrs["rtol"] == 1e-2
    assert attrs["checkpoint"] == str(trained_checkpoint) and attrs["input"] == str(processed_file)
    assert "particle_model" in attrs["config"]
    assert [path.name for path in tmp_path.iterdir()] == ["likelihood.h5"]  # no partial files left


@pytest.mark.parametrize("problem", ["missing input", "not a checkpoint", "output exists"])
def test_the_command_line_refuses_bad_input(test_config, processed_file, trained_checkpoint, tmp_path, capsys,
                                            problem):
    output = tmp_path / "likelihood.h5"
    input_file, checkpoint = processed_file, trained_checkpoint
    if problem == "missing input":
        input_file = tmp_path / "missing.h5"
    elif problem == "not a checkpoint":
        checkpoint = tmp_path
    else:
        output.write_text("keep me")
    assert likelihood_command.main(_args(test_config, checkpoint, input_file, output, "--limit", "2")) == 2
    assert capsys.readouterr().err.startswith("error: ")
    if problem == "output exists":
        assert output.read_text() == "keep me"
    else:
        assert not output.exists()
