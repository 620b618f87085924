"""Training and test sets of every mode, and the score files, on small hand-made event files.

Every event carries its identity in the leading jet's pT, so overlaps between samples show.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lhco_diffusion.data import selection
from lhco_diffusion.workflow import scores as score_files, tasks
from lhco_diffusion.data import processed
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError

NPART = 4
SR, SB = 3500.0, 3000.0  # GeV, inside the signal region and the lower sideband


def make_events(regions_and_labels: list[tuple[float, int, int]], first_id: int = 0,
                npart: int = NPART) -> Events:
    """Events ``(mjj, label, count)`` blocks; event i has leading-jet pT 1000 + first_id + i."""
    mjj = np.concatenate([np.full(n, value) for value, _, n in regions_and_labels])
    label = np.concatenate([np.full(n, flag) for _, flag, n in regions_and_labels])
    n = len(mjj)
    rng = np.random.default_rng(first_id)
    n_constituents = rng.integers(1, npart + 1, size=(n, 2))
    mask = np.arange(npart) < n_constituents[..., None]
    particles = np.stack([rng.uniform(0.01, 1.0, (n, 2, npart)), rng.normal(0, 0.1, (n, 2, npart)),
                          rng.normal(0, 0.1, (n, 2, npart))], axis=-1) * mask[..., None]
    jets = np.stack([np.full((n, 2), 1200.0), rng.normal(0, 1, (n, 2)), rng.uniform(-3, 3, (n, 2)),
                     rng.uniform(50, 500, (n, 2)), n_constituents], axis=-1)
    jets[:, 0, 0] = 1000.0 + first_id + np.arange(n)
    return Events(particles, jets, mjj + 0.001 * np.arange(n), label)


def identities(events: Events) -> set[int]:
    return set(np.rint(events.jets[:, 0, 0] - 1000.0).astype(int))


def write(path, events: Events):
    with processed.EventWriter(path, events.npart) as writer:
        writer.append(events)
    return path


@pytest.fixture
def data_file(tmp_path):
    """200 SR background, 60 SR signal, 100 SB background, 20 SB signal, 20 events above the SB."""
    blocks = [(SR, 0, 120), (SB, 0, 100), (SR, 1, 60), (SB, 1, 20), (SR, 0, 80), (6000.0, 0, 20)]
    return write(tmp_path / "data.h5", make_events(blocks))


@pytest.fixture
def config(test_config):
    classifier = dataclasses.replace(test_config.classifier, n_test_background=50, n_background=80,
                                     n_generated=40, oversampling=1, n_test_signal=30, nsig=(10, 20))
    data = dataclasses.replace(test_config.data, npart=NPART, extra_background=None)
    return test_config.replace(classifier=classifier, data=data)


def with_counts(config, **counts):
    return config.replace(classifier=dataclasses.replace(config.classifier, **counts))


def background_sizes(split) -> tuple[int, int, int]:
    return len(split.test_background), len(split.data_background), len(split.extra_background)


def test_signal_region_split_is_disjoint_sized_and_deterministic(config, data_file):
    split = selection.split_signal_region(config, data_file)
    parts = dataclasses.asdict(split).keys()
    sizes = {name: len(getattr(split, name)) for name in parts}
    assert sizes == {"data_background": 80, "extra_background": 40, "test_background": 50,
                     "injection_signal": 20, "test_signal": 30}
    ids = [identities(getattr(split, name)) for name in parts]
    assert sum(map(len, ids)) == len(set().union(*ids))  # no event in two parts
    for name in parts:
        events = getattr(split, name)
        assert np.all((events.mjj > 3300) & (events.mjj < 3700))
        assert np.all(events.label == (1 if name.endswith("signal") else 0))
    again = selection.split_signal_region(config, data_file)
    assert all(identities(getattr(again, name)) == identities(getattr(split, name)) for name in parts)


def test_events_keep_their_particles_through_the_split(config, data_file):
    everything = processed.load(data_file)
    split = selection.split_signal_region(config, data_file)
    rows = np.rint(split.test_signal.jets[:, 0, 0] - 1000.0).astype(int)
    np.testing.assert_array_equal(split.test_signal.particles, everything.particles[rows])
    np.testing.assert_array_equal(split.test_signal.jets, everything.jets[rows])


def test_too_few_events_scale_test_and_data_down_with_a_warning(config, data_file):
    config = with_counts(config, n_background=300, n_generated=300)
    with pytest.warns(selection.SampleSizeWarning, match="only 200 SR background"):
        split = selection.split_signal_region(config, data_file)
    # test 50 + data 300 wanted from 200: each gets 200/350 of its size, "extra" the one left
    assert background_sizes(split) == (28, 171, 1)


def test_extra_background_takes_only_what_test_and_data_leave(config, data_file):
    config = with_counts(config, n_background=140, n_generated=300)
    split = selection.split_signal_region(config, data_file)
    assert background_sizes(split) == (50, 140, 10)
    with pytest.warns(selection.SampleSizeWarning, match="only 10 extra SR background"):
        task = tasks.signal_region_task("idealized", config, split)
    assert len(task.class0) == 10


def test_extra_background_file_supplies_test_and_extra_background(config, data_file, tmp_path):
    extra = write(tmp_path / "extra.h5", make_events([(SR, 0, 150), (SB, 0, 10)], first_id=10_000))
    split = selection.split_signal_region(config, data_file, extra)
    for name in ("test_background", "extra_background"):
        assert min(identities(getattr(split, name))) >= 10_000
    assert max(identities(split.data_background)) < 10_000
    assert len(split.test_background) == 50 and len(split.extra_background) == 40


def test_reading_rows_across_chunks_keeps_the_requested_order(data_file, monkeypatch):
    monkeypatch.setattr(processed, "READ_CHUNK", 7)
    rows = np.array([250, 3, 17, 16, 100, 0])
    events = processed.load_rows(data_file, rows, npart=6)
    assert [int(i) for i in np.rint(events.jets[:, 0, 0] - 1000.0)] == list(rows)
    assert events.npart == 6 and np.all(events.particles[:, :, NPART:] == 0)


@pytest.fixture
def generated_file(tmp_path):
    return write(tmp_path / "generated.h5", make_events([(SB, 0, 30), (SR, 0, 70)], first_id=20_000))


def test_cwola_trains_generated_against_background_plus_injected_signal(config, data_file, generated_file):
    split = selection.split_signal_region(config, data_file)
    task = tasks.signal_region_task("cwola", config, split, nsig=10, generated_path=generated_file)
    assert len(task.class0) == 40  # oversampling x 80 data events, at most n_generated
    assert min(identities(task.class0)) >= 20_000 and np.all(task.class0.mjj > 3300)
    assert len(task.class1) == 90 and task.class1.label.sum() == 10 and task.nsig == 10
    injected = split.injection_signal.select(slice(0, 10))
    assert identities(task.class1) == identities(split.data_background) | identities(injected)
    assert identities(task.test) == identities(split.test_background) | identities(split.test_signal)


def test_every_signal_region_mode_and_injection_shares_one_test_set(config, data_file, generated_file):
    split = selection.split_signal_region(config, data_file)
    digests = {tasks.events_digest(tasks.signal_region_task(mode, config, split, nsig, generated_file).test)
               for mode in ("cwola", "idealized", "supervised") for nsig in (0, 10, 20)}
    assert len(digests) == 1


def test_idealized_and_supervised_training_sets(config, data_file):
    split = selection.split_signal_region(config, data_file)
    idealized = tasks.signal_region_task("idealized", config, split, nsig=20)
    assert identities(idealized.class0) == identities(split.extra_background)
    assert len(idealized.class1) == 100
    supervised = tasks.signal_region_task("supervised", config, split)
    assert supervised.nsig == 20 and np.all(supervised.class1.label == 1)
    assert identities(supervised.class0) == identities(split.data_background)


@pytest.mark.parametrize("mode, nsig, generated, message", [
    ("cwola", 5, False, "needs --generated"),
    ("idealized", 21, False, "exceeds the 20 SR signal events"),
    ("two-sample", 5, False, "not a signal-region mode"),
])
def test_impossible_signal_region_tasks_are_refused(config, data_file, generated_file, mode, nsig, generated,
                                                    message):
    split = selection.split_signal_region(config, data_file)
    with pytest.raises(InputError, match=message):
        tasks.signal_region_task(mode, config, split, nsig, generated_file if generated else None)


def test_two_sample_balances_and_holds_out_part_of_both_samples(config, generated_file, tmp_path):
    reference = write(tmp_path / "reference.h5", make_events([(SR, 0, 90)], first_id=30_000))
    with pytest.warns(selection.SampleSizeWarning, match="two-sample test"):
        task = tasks.two_sample_task(config, generated_file, "SR", reference)
    assert len(task.test) == 2 * 17  # a quarter of the 70 generated SR events each
    assert np.all(task.class0.label == 0) and np.all(task.class1.label == 1)
    assert len(task.class0) == 70 - 17 and len(task.class1) == 70 - 17  # the 90 reference events cut to 70
    test_ids = identities(task.test)
    assert not test_ids & (identities(task.class0) | identities(task.class1))
    assert np.array_equal(task.test.label, np.r_[np.zeros(17), np.ones(17)])
    with pytest.warns(selection.SampleSizeWarning):
        again = tasks.two_sample_task(config, generated_file, "SR", reference)
    assert tasks.events_digest(again.test) == tasks.events_digest(task.test)


def test_two_sample_reference_in_the_sideband_is_its_validation_split(config, generated_file, data_file):
    with pytest.warns(selection.SampleSizeWarning):
        task = tasks.two_sample_task(config, generated_file, "SB", data_path=data_file)
    reference = identities(task.class1) | identities(task.test.select(task.test.label == 1))
    validation = identities(selection.reference_background(data_file, "SB", config))
    assert len(validation) == 40  # 40 % of the 100 sideband background events
    assert len(reference) == 30 and reference <= validation  # cut to the 30 generated SB events


def test_training_split_is_disjoint_complete_and_seeded(config, data_file):
    task = tasks.signal_region_task("supervised", config, selection.split_signal_region(config, data_file))
    train, validation = tasks.training_split(task, 0.2, seed=1)
    assert len(validation) == 20 and len(train) == 80
    assert sorted(np.r_[train, validation]) == list(range(100))
    assert not np.array_equal(tasks.training_split(task, 0.2, seed=2)[1], validation)
    events, labels = tasks.events_and_labels(task)
    assert labels.sum() == len(task.class1) and len(events) == 100


# ---------------------------------------------------------------------------- score files


def score_file(directory, config, task, nsig, seed, shift=0.0):
    task = dataclasses.replace(task, nsig=nsig)
    scores = task.test.label + np.linspace(0, 1, len(task.test)) + shift
    path = directory / score_files.score_name(nsig, seed)
    auc = score_files.write_scores(path, scores, task, seed, config, {"epochs_trained": 3})
    return path, auc


@pytest.fixture
def task(config, data_file):
    return tasks.signal_region_task("supervised", config, selection.split_signal_region(config, data_file))


def test_score_files_round_trip(config, task, tmp_path):
    path, auc = score_file(tmp_path / "scores" / "supervised", config, task, nsig=20, seed=3)
    loaded = score_files.read_scores(path)
    assert (loaded.nsig, loaded.seed, loaded.attrs["mode"]) == (20, 3, "supervised")
    assert loaded.attrs["epochs_trained"] == 3
    assert loaded.attrs["auc"] == pytest.approx(auc)
    assert loaded.attrs["test_digest"] == tasks.events_digest(task.test)
    np.testing.assert_array_equal(loaded.label, task.test.label)
    assert "classifier:" in loaded.attrs["config"]


def test_collect_groups_mode_directories(config, task, tmp_path):
    for nsig in (10, 20):
        for seed in (0, 1):
            score_file(tmp_path / "scores" / "supervised", config, task, nsig, seed)
    groups = score_files.collect_scores(tmp_path / "scores", expected_seeds=2)
    assert list(groups) == ["supervised"]
    assert [(f.nsig, f.seed) for f in groups["supervised"]] == [(10, 0), (10, 1), (20, 0), (20, 1)]
    assert list(score_files.collect_scores(tmp_path / "scores" / "supervised")) == ["supervised"]


def test_collect_refuses_score_files_of_different_test_sets(config, task, tmp_path):
    score_file(tmp_path / "scores" / "supervised", config, task, 10, 0)
    other = dataclasses.replace(task, test=task.test.select(slice(1, None)))
    score_file(tmp_path / "scores" / "supervised", config, other, 10, 1)
    with pytest.raises(InputError, match="different test sets"):
        score_files.collect_scores(tmp_path / "scores")


def test_collect_refuses_missing_seeds(config, task, tmp_path):
    for nsig, seed in ((10, 0), (10, 1), (20, 0)):
        score_file(tmp_path / "scores" / "supervised", config, task, nsig, seed)
    with pytest.raises(InputError, match="nsig 20 lacks seed"):
        score_files.collect_scores(tmp_path / "scores")
    score_file(tmp_path / "scores" / "supervised", config, task, 20, 1)
    with pytest.raises(InputError, match="classifier.seeds asks for 3"):
        score_files.collect_scores(tmp_path / "scores", expected_seeds=3)


def test_collect_refuses_empty_mode_directories_and_foreign_files(config, task, tmp_path):
    (tmp_path / "scores" / "cwola").mkdir(parents=True)
    score_file(tmp_path / "scores" / "supervised", config, task, 10, 0)
    with pytest.raises(InputError, match="holds no score files"):
        score_files.collect_scores(tmp_path / "scores")
    (tmp_path / "scores" / "cwola" / "nsig10_seed0.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not a score file"):
        score_files.collect_scores(tmp_path / "scores")
    with pytest.raises(InputError, match="does not exist"):
        score_files.collect_scores(tmp_path / "missing")


def test_the_signal_region_mjj_density_is_fitted_to_the_searchs_data(config, data_file):
    """The KDE of SR generation sees the SR data the classifier sees (80 background events plus
    the 20-event injection pool), not the file's 200 SR background and 60 signal events."""
    split = selection.split_signal_region(config, data_file)
    density = selection.mjj_density(data_file, config)
    data_mjj = np.concatenate([split.data_background.mjj, split.injection_signal.mjj])
    np.testing.assert_allclose(np.sort(density.mjj_tev * 1000.0), np.sort(data_mjj), rtol=1e-6)
    assert len(data_mjj) == 80 + 20
    sideband = selection.mjj_density(data_file, dataclasses.replace(
        config, data=dataclasses.replace(config.data, kde_source="sideband")))
    assert len(sideband.mjj_tev) == 100 + 20
