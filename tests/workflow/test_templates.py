"""python -m lhco_diffusion.sample: generated files obey the processed schema and resume exactly."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.workflow import checkpoints, generation, templates
from lhco_diffusion.commands import sample
from lhco_diffusion.data import processed
from lhco_diffusion.errors import InputError
from conftest import ROOT


def _args(test_config, checkpoint, output, *extra):
    return ["--config", str(ROOT / "configs" / "test.yaml"), "--set", f"paths.cache_dir={test_config.paths.cache_dir}",
            "--checkpoint", str(checkpoint), "--output", str(output), "--quiet", *extra]


@pytest.mark.parametrize("region", ["SR", "SB"])
def test_generated_files_pass_the_processed_file_validator(test_config, trained_checkpoint, tmp_path, region):
    output = tmp_path / f"{region}.h5"
    assert sample.main(_args(test_config, trained_checkpoint, output, "--region", region, "--n", "150",
                             "--batch-size", "64")) == 0
    events = processed.load(output)
    window = test_config.data.signal_region if region == "SR" else test_config.data.sideband
    processed.validate(events, mjj_range=window)
    assert len(events) == 150 and events.npart == test_config.data.npart
    assert np.all(events.jets[..., 4] >= 1)
    assert np.all(np.diff(events.particles[..., 0], axis=-1)[events.mask[..., 1:]] <= 0)  # pT-ordered
    attrs = processed.read_attrs(output)
    assert attrs["complete"] and attrs["region"] == region and attrs["solver"] == test_config.sampling.solver
    assert str(trained_checkpoint) == attrs["checkpoint"] and "jet_model" in attrs["config"]


def test_an_interrupted_file_is_completed_without_losing_or_duplicating_events(
        test_config, processed_file, trained_checkpoint, tmp_path, monkeypatch):
    checkpoint = checkpoints.load(trained_checkpoint)
    whole, split = tmp_path / "whole.h5", tmp_path / "split.h5"
    options = dict(checkpoint=checkpoint, config=test_config, data_path=processed_file, region="SR", n=130,
                   seed=5, batch_size=50, progress=False)
    templates.write_templates(whole, **options)
    generate = generation.generate_events
    calls = []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_events", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        templates.write_templates(split, **options)
    attrs = processed.read_attrs(split)
    assert attrs["n_complete"] == 50 and not attrs["complete"]
    with pytest.raises(InputError, match="incomplete"):  # no reader accepts it until it is resumed
        processed.count(split)
    monkeypatch.setattr(generation, "generate_events", generate)
    templates.write_templates(split, resume=True, **options)
    a, b = processed.load(whole), processed.load(split)
    assert len(b) == 130
    np.testing.assert_allclose(b.particles, a.particles, atol=1e-5)
    np.testing.assert_allclose(b.jets, a.jets, rtol=1e-5)
    np.testing.assert_array_equal(b.mjj, a.mjj)


def test_existing_output_needs_resume_and_resume_needs_the_same_settings(
        test_config, trained_checkpoint, tmp_path, capsys):
    output = tmp_path / "SR.h5"
    assert sample.main(_args(test_config, trained_checkpoint, output, "--n", "20")) == 0
    before = output.read_bytes()
    assert sample.main(_args(test_config, trained_checkpoint, output, "--n", "20")) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert sample.main(_args(test_config, trained_checkpoint, output, "--n", "20", "--seed", "99",
                             "--resume")) == 2
    assert "same settings" in capsys.readouterr().err
    assert output.read_bytes() == before


@pytest.mark.parametrize("mode", ["noise", "partial-sb"])
def test_exact_mjj_scales_the_jets_to_their_condition_and_leaves_the_particles(
        test_config, trained_checkpoint, tmp_path, mode):
    from lhco_diffusion.data.kinematics import dijet_mass

    files = {exact: tmp_path / f"exact_{exact}.h5" for exact in ("false", "true")}
    for exact, output in files.items():
        assert sample.main(_args(test_config, trained_checkpoint, output, "--n", "40", "--mode", mode,
                                 "--t-star", "0.4", "--set", f"sampling.exact_mjj={exact}")) == 0
    free, exact = (processed.load(files[key]) for key in ("false", "true"))
    assert np.abs(dijet_mass(free.jets) / free.mjj - 1).max() > 1e-3  # the tiny model misses its condition
    np.testing.assert_allclose(dijet_mass(exact.jets), exact.mjj, rtol=1e-5)
    np.testing.assert_array_equal(exact.mjj, free.mjj)
    np.testing.assert_allclose(exact.particles, free.particles, atol=1e-6)
    np.testing.assert_allclose(exact.jets[..., [1, 2, 4]], free.jets[..., [1, 2, 4]], atol=1e-6)
    assert processed.read_attrs(files["true"])["exact_mjj"]


def test_with_the_data_selection_every_generated_event_has_a_jet_above_the_cut(
        test_config, trained_checkpoint, tmp_path):
    cut = test_config.data.min_leading_jet_pt
    files = {selected: tmp_path / f"selected_{selected}.h5" for selected in ("false", "true")}
    for selected, output in files.items():
        assert sample.main(_args(test_config, trained_checkpoint, output, "--n", "150", "--batch-size", "64",
                                 "--set", f"sampling.apply_data_selection={selected}")) == 0
    free, selected = (processed.load(files[key]) for key in ("false", "true"))
    assert np.mean(free.jets[..., 0].max(axis=1) <= cut) > 0.02  # the tiny model does make such events
    assert np.all(selected.jets[..., 0].max(axis=1) > cut)
    np.testing.assert_array_equal(selected.mjj, free.mjj)  # each is drawn again at its own mjj
    assert processed.read_attrs(files["true"])["apply_data_selection"]


def test_a_directory_that_is_not_a_checkpoint_is_refused(test_config, tmp_path, capsys):
    assert sample.main(_args(test_config, tmp_path, tmp_path / "out.h5")) == 2
    assert "not a training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("mode", ["partial-sr", "partial-sb"])
def test_partial_diffusion_modes_write_signal_region_templates(test_config, trained_checkpoint, tmp_path, mode):
    output = tmp_path / f"{mode}.h5"
    assert sample.main(_args(test_config, trained_checkpoint, output, "--mode", mode, "--t-star", "0.4",
                             "--n", "80")) == 0
    events = processed.load(output)
    processed.validate(events, mjj_range=test_config.data.signal_region)
    assert len(events) == 80 and processed.read_attrs(output)["mode"] == mode


def test_partial_diffusion_from_a_small_t_star_stays_close_to_its_source(
        test_config, processed_file, trained_checkpoint):
    checkpoint = checkpoints.load(trained_checkpoint)
    source = templates.source_events(test_config, processed_file, "partial-sr", None).select(slice(0, 40))
    npart = test_config.data.npart
    near = generation.partially_diffuse_events(checkpoint.model, checkpoint.stats, source, source.mjj, 0.02,
                                               npart, "ddim", 8, seed=1)
    far = generation.partially_diffuse_events(checkpoint.model, checkpoint.stats, source, source.mjj, 1.0,
                                              npart, "ddim", 8, seed=1)
    np.testing.assert_array_equal(near.jets[..., 4], source.jets[..., 4])  # multiplicities are kept
    near_error = np.abs(np.log(near.jets[..., 0] / source.jets[..., 0])).mean()
    far_error = np.abs(np.log(far.jets[..., 0] / source.jets[..., 0])).mean()
    assert near_error < 0.05 < far_error


def test_partial_diffusion_templates_are_scored_as_their_own_method(test_config, trained_checkpoint, tmp_path):
    from lhco_diffusion.workflow import tasks, weak_supervision

    output = tmp_path / "templates.h5"
    assert sample.main(_args(test_config, trained_checkpoint, output, "--mode", "partial-sb", "--t-star", "0.4",
                             "--n", "20")) == 0
    noise = tmp_path / "noise.h5"
    assert sample.main(_args(test_config, trained_checkpoint, noise, "--n", "20")) == 0
    task = tasks.Task("cwola", "SR", None, None, None, 0)
    assert weak_supervision.method_name(task, output) == "cwola-partial-sb-t0.4"
    assert weak_supervision.method_name(task, noise) == "cwola"
    assert weak_supervision.method_name(tasks.Task("two-sample", "SB", None, None, None, 0)) == "two-sample-SB"


@pytest.mark.parametrize("override, key", [("data.npart=12", "data.npart"),
                                           ("particle_model.num_layers=3", "particle_model.num_layers"),
                                           ("data.signal_region=[3200,3700]", "data.signal_region")])
def test_a_config_contradicting_the_checkpoint_is_refused(test_config, trained_checkpoint, tmp_path, capsys,
                                                          override, key):
    output = tmp_path / "SR.h5"
    assert sample.main(_args(test_config, trained_checkpoint, output, "--n", "10", "--set", override)) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error and key in error and "checkpoint" in error
    assert not output.exists()


def test_templates_at_given_mjj_are_generated_at_exactly_those(test_config, processed_file, trained_checkpoint,
                                                               tmp_path):
    """The fidelity benchmark's SR sample at the true background's mjj: every event keeps its given
    mjj, in order, and the file says so (a resumed file must not mix it with KDE draws)."""
    checkpoint = checkpoints.load(trained_checkpoint)
    mjj = np.linspace(*test_config.data.signal_region, 40)[::-1].copy()
    options = dict(checkpoint=checkpoint, config=test_config, data_path=processed_file, region="SR", seed=3,
                   batch_size=16, progress=False)
    output = tmp_path / "given.h5"
    templates.write_templates(output, n=40, mjj=mjj, **options)
    np.testing.assert_allclose(processed.load(output).mjj, mjj, rtol=1e-6)
    assert processed.read_attrs(output)["mjj_given"]
    with pytest.raises(InputError, match="same settings"):
        templates.write_templates(output, n=40, resume=True, **options)
    with pytest.raises(InputError, match="one value per event"):
        templates.write_templates(tmp_path / "short.h5", n=41, mjj=mjj, **options)
