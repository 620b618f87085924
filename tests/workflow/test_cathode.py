"""The CATHODE baseline: the conditional flow (model space, training, saving, reuse, fidelity) and
the high-level classify modes (test set shared with the full-phase-space modes, signal found)."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from lhco_diffusion.commands import classify, evaluate
from lhco_diffusion import config as config_module
from lhco_diffusion.workflow import cathode_flow as flow, cathode as high_level, metrics
from lhco_diffusion.data import selection
from lhco_diffusion.workflow import scores as score_files, tasks
from lhco_diffusion.data import processed, regions, sources, substructure
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.models.maf import ConditionalFlow

from conftest import CONFIGS

pytestmark = pytest.mark.filterwarnings("ignore::lhco_diffusion.data.selection.SampleSizeWarning")


def with_flow(config, **settings):
    return config.replace(flow=dataclasses.replace(config.flow, **settings))


@pytest.fixture(scope="module")
def tiny_flow(test_config, processed_file):
    """The test configuration's (tiny) flow, trained once on the tiny prepared file."""
    return flow.trained_flow(test_config, processed_file, verbose=False)


def test_preprocessing_is_invertible_and_keeps_samples_in_range():
    rng = np.random.default_rng(0)
    features = np.stack([rng.gamma(3.0, 20.0, 500), rng.exponential(30.0, 500), rng.uniform(0.2, 1.1, 500),
                         rng.uniform(0.1, 1.0, 500)], axis=1)
    preprocessing = flow.Preprocessing.fit(features, (2300.0, 5000.0))
    latent = preprocessing.to_latent(features)
    np.testing.assert_allclose(latent.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(latent.std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(preprocessing.to_physical(latent), features, rtol=1e-4, atol=1e-3)
    extreme = preprocessing.to_physical(np.array([[-50.0, 50.0, -1e3, 1e3]]))
    assert np.all(extreme >= preprocessing.minimum - 1e-3) and np.all(extreme <= preprocessing.maximum + 1e-3)
    np.testing.assert_allclose(preprocessing.condition([2300.0, 3650.0, 5000.0]).ravel(), [-1.0, 0.0, 1.0])


def test_an_untrained_flow_is_a_standard_normal_even_when_deep():
    """Every block starts as the identity (its gate is 0), so 15 blocks cannot blow up at the start."""
    from scipy.stats import norm

    model = ConditionalFlow(num_layers=15, hidden_units=(8,), n_features=4)
    features = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32) * 3
    condition = np.linspace(-1, 1, 50, dtype=np.float32)[:, None]
    expected = norm.logpdf(features).sum(axis=1)
    np.testing.assert_allclose(model.log_prob(features, condition).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(model.sample(condition, features).numpy(), features, rtol=1e-6)


def test_paper_configuration_has_cathode_sized_flow():
    settings = config_module.load(CONFIGS / "lhco_279.yaml").flow
    assert (settings.num_layers, settings.hidden_units, settings.learning_rate) == (15, (128,), 1e-4)
    assert (settings.batch_size, settings.epochs, settings.oversampling) == (256, 100, 4)


def test_flow_samples_finite_features_for_given_mjj(tiny_flow):
    mjj = np.linspace(3300.0, 3700.0, 300)
    samples = tiny_flow.sample(mjj, seed=3)
    assert samples.shape == (300, 4) and samples.dtype == np.float32 and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(samples, tiny_flow.sample(mjj, seed=3))
    assert not np.array_equal(samples, tiny_flow.sample(mjj, seed=4))
    assert np.all(samples[:, 1] >= tiny_flow.preprocessing.minimum[1])
    assert tiny_flow.record["epochs_trained"] >= 1 and np.isfinite(tiny_flow.record["best_test_loss"])


def test_flow_trains_on_the_sideband_splits_of_the_diffusion_models(test_config, processed_file, tiny_flow):
    splits = flow.sideband_features(test_config, processed_file)
    events = processed.load(processed_file, npart=test_config.data.npart)
    background = events.select(regions.sideband_mask(events.mjj, test_config.data) & (events.label == 0))
    fractions = test_config.data.sideband_fractions
    rows = regions.sideband_splits(len(background), fractions, test_config.data.seed)
    for name, (features, mjj) in splits.items():
        np.testing.assert_array_equal(mjj, background.mjj[rows[name]])
        np.testing.assert_array_equal(features, substructure.cathode_features(background.select(rows[name])))
    assert tiny_flow.record["n_train"] == len(rows["train"]) and tiny_flow.record["n_test"] == len(rows["test"])


def test_saved_flow_is_reused_and_keyed_by_its_settings(test_config, processed_file, tiny_flow):
    assert tiny_flow.directory == flow.directory(test_config, processed_file)
    stamp = (tiny_flow.directory / "record.json").stat().st_mtime_ns
    again = flow.trained_flow(test_config, processed_file, verbose=False)
    assert (again.directory / "record.json").stat().st_mtime_ns == stamp  # loaded, not trained anew
    features, mjj = flow.sideband_features(test_config, processed_file)["test"]
    np.testing.assert_allclose(again.log_prob(features, mjj), tiny_flow.log_prob(features, mjj), rtol=1e-5)
    np.testing.assert_array_equal(again.sample(mjj, 1), tiny_flow.sample(mjj, 1))
    assert flow.directory(with_flow(test_config, oversampling=9, classifier="hgb"), processed_file) == again.directory
    assert flow.directory(with_flow(test_config, epochs=4), processed_file) != again.directory
    record = json.loads((again.directory / "record.json").read_text())
    assert record["config"]["flow"]["num_layers"] == test_config.flow.num_layers


def test_flow_needs_prepared_substructure(test_config, processed_file, tmp_path):
    events = dataclasses.replace(processed.load(processed_file), substructure=None)
    with processed.EventWriter(tmp_path / "old.h5", events.npart) as writer:
        writer.append(events)
    with pytest.raises(InputError, match="jet_substructure"):
        flow.train(test_config, tmp_path / "old.h5", verbose=False)


@pytest.mark.parametrize("classifier", ["mlp", "hgb"])
def test_high_level_classifiers_separate_shifted_samples(test_config, classifier):
    rng = np.random.default_rng(1)
    class0, class1 = rng.normal(size=(600, 4)), rng.normal(size=(600, 4)) + [1.5, 0.0, 0.0, 0.0]
    test = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + [1.5, 0.0, 0.0, 0.0]])
    config = with_flow(test_config, classifier=classifier)
    config = config.replace(classifier=dataclasses.replace(config.classifier, epochs=20, early_stopping_patience=3))
    scores, record = high_level.fit_and_score(class0, class1, test, config, seed=0)
    assert scores.shape == (600,) and scores.dtype == np.float32
    assert metrics.auc(scores, np.repeat([0, 1], 300)) > 0.8
    assert record["classifier"] == classifier and record["n_class0"] == 600


def test_balanced_weights_give_each_class_half_the_weight():
    labels = np.array([0, 0, 0, 1])
    weights = high_level.balanced_weights(labels)
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 1].sum())
    assert weights.mean() == pytest.approx(1.0)


TINY = ["classifier.n_background=150"]  # leaves SR background for the idealized template


def tiny_arguments(test_config) -> list[str]:
    paths = [f"paths.cache_dir={test_config.paths.cache_dir}", f"paths.run_dir={test_config.paths.run_dir}"]
    return ["--config", str(CONFIGS / "test.yaml"), *[item for o in TINY + paths for item in ("--set", o)]]


@pytest.mark.parametrize("mode", ["cathode", "idealized-hl", "supervised-hl"])
def test_high_level_modes_score_the_full_phase_space_test_set(test_config, processed_file, tiny_flow, mode, capsys):
    assert classify.main([*tiny_arguments(test_config), "--mode", mode, "--nsig", "50", "--seed", "1"]) == 0
    path = config_module.expand(test_config.paths.run_dir) / "scores" / mode / score_files.score_name(50, 1)
    scores = score_files.read_scores(path)
    config = test_config.replace(classifier=dataclasses.replace(test_config.classifier, n_background=150))
    split = selection.split_signal_region(config, processed_file)
    test = Events.concatenate([split.test_background, split.test_signal])
    assert scores.attrs["mode"] == mode and scores.attrs["nsig"] == 50
    assert scores.attrs["test_digest"] == tasks.events_digest(test)
    np.testing.assert_array_equal(scores.label, test.label)
    if mode == "cathode":
        assert scores.attrs["flow"] == str(tiny_flow.directory)
        assert scores.attrs["n_class0"] == test_config.flow.oversampling * scores.attrs["n_class1"]
    assert "test AUC" in capsys.readouterr().out


def test_evaluate_draws_high_level_and_full_modes_together(test_config, processed_file, tmp_path):
    directory = config_module.expand(test_config.paths.run_dir) / "scores"
    for mode in ("cathode", "supervised-hl"):
        if not (directory / mode / score_files.score_name(50, 1)).exists():
            assert classify.main([*tiny_arguments(test_config), "--mode", mode, "--nsig", "50", "--seed", "1"]) == 0
    scores = tmp_path / "scores"
    for mode in ("cathode", "supervised-hl"):
        (scores / mode).mkdir(parents=True)
        (scores / mode / "nsig50_seed1.h5").write_bytes((directory / mode / score_files.score_name(50, 1)).read_bytes())
    argv = ["--config", str(CONFIGS / "test.yaml"), "--set", "classifier.seeds=1", "--set",
            "evaluation.formats=[png]", "--scores", str(scores), "--output", str(tmp_path / "out")]
    assert evaluate.main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["modes"]) == {"cathode", "supervised-hl"}
    assert (tmp_path / "out" / "max_sic_vs_nsig.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------- a larger synthetic sample

LARGER = [
    "data.synthetic_events=50000",
    "classifier.n_background=1300", "classifier.n_test_background=1500", "classifier.nsig=[1000]",
    "classifier.n_test_signal=1000", "classifier.epochs=30", "classifier.early_stopping_patience=5",
    "flow.num_layers=4", "flow.hidden_units=[64]", "flow.epochs=120", "flow.learning_rate=1e-3",
    "flow.early_stopping_patience=15", "flow.oversampling=4",
]


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """50000 synthetic events (about 27k sideband background, 14k of them to train the flow),
    prepared once, and their configuration."""
    base = tmp_path_factory.mktemp("cathode")
    paths = [f"paths.cache_dir={base / 'cache'}", f"paths.run_dir={base / 'run'}"]
    config = config_module.load(CONFIGS / "test.yaml", [*LARGER, *paths])
    arguments = ["--config", str(CONFIGS / "test.yaml"), *[item for o in LARGER + paths for item in ("--set", o)]]
    return config, sources.processed_file(config, progress=False), arguments


@pytest.mark.slow
def test_flow_samples_are_hard_to_tell_from_held_out_sideband_data(larger):
    """Two-sample test: flow samples at the held-out sideband events' mjj versus those events,
    a gradient-boosted classifier trained on half of each and scored on the other half."""
    config, data, _ = larger
    trained = flow.trained_flow(config, data, verbose=False)
    features, mjj = flow.sideband_features(config, data)["validation"]
    samples = trained.sample(mjj, seed=11)
    half = len(mjj) // 2
    scores, _ = high_level.fit_and_score(samples[:half], features[:half],
                                         np.concatenate([samples[half:], features[half:]]),
                                         with_flow(config, classifier="hgb"), seed=0)
    labels = np.repeat([0, 1], [len(mjj) - half, len(mjj) - half])
    auc = metrics.auc(scores, labels)
    print(f"flow two-sample AUC {auc:.3f} on {len(labels)} held-out sideband events and samples")
    assert len(mjj) > 10_000
    assert auc < 0.55


@pytest.mark.slow
def test_cathode_mode_finds_a_large_injected_signal(larger, capsys):
    config, data, arguments = larger
    with warnings.catch_warnings():
        assert classify.main([*arguments, "--mode", "cathode", "--nsig", "1000", "--seed", "0"]) == 0
    path = config_module.expand(config.paths.run_dir) / "scores" / "cathode" / score_files.score_name(1000, 0)
    scores = score_files.read_scores(path)
    print(capsys.readouterr().out.splitlines()[-1])
    assert scores.attrs["auc"] > 0.8
    assert scores.attrs["n_test_signal"] == 1000 and scores.attrs["n_test_background"] == 1500
