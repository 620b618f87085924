"""classify and evaluate from the command line: the synthetic signal is found, two halves of one
background are indistinguishable, evaluate draws and summarises it all, and bad input gets one
sentence and exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lhco_diffusion.commands import classify, evaluate
from lhco_diffusion.workflow import metrics, plotting
from lhco_diffusion import config as config_module
from lhco_diffusion.workflow import scores as score_files, tasks
from lhco_diffusion.data import processed, sources

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test.yaml"
# Enough synthetic events for ~4000 SR background and ~2000 SR signal events after the cuts.
OVERRIDES = [
    "data.synthetic_events=30000",
    "classifier.n_background=1300", "classifier.n_generated=1300", "classifier.n_test_background=1500",
    "classifier.nsig=[1000]", "classifier.n_test_signal=1000",
    "classifier.epochs=8", "classifier.early_stopping_patience=3", "classifier.seeds=2",
]
SEEDS = (0, 1)


def arguments(base: Path) -> list[str]:
    paths = [f"paths.cache_dir={base / 'cache'}", f"paths.run_dir={base / 'run'}"]
    return ["--config", str(CONFIG), *[item for o in OVERRIDES + paths for item in ("--set", o)]]


def halves_of_the_background(data: Path, directory: Path) -> tuple[Path, Path]:
    """Even and odd background events of ``data`` as two files: one stands in for generated events."""
    background = processed.load(data)
    background = background.select(background.label == 0)
    paths = directory / "generated.h5", directory / "reference.h5"
    for path, half in zip(paths, (slice(0, None, 2), slice(1, None, 2))):
        with processed.EventWriter(path, background.npart) as writer:
            writer.append(background.select(half))
    return paths


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Scores of supervised, idealized and two-sample (SB) trainings, two seeds each, and their evaluation."""
    base = tmp_path_factory.mktemp("search")
    config = config_module.load(CONFIG, [*OVERRIDES, f"paths.cache_dir={base / 'cache'}"])
    data = sources.processed_file(config, progress=False)
    generated, reference = halves_of_the_background(data, base)
    for seed in SEEDS:
        for mode in ("supervised", "idealized"):
            assert classify.main([*arguments(base), "--mode", mode, "--seed", str(seed)]) == 0
        assert classify.main([*arguments(base), "--mode", "two-sample", "--region", "SB", "--seed", str(seed),
                              "--generated", str(generated), "--reference", str(reference)]) == 0
    scores = base / "run" / "scores"
    output = base / "evaluation"
    assert evaluate.main([*arguments(base), "--scores", str(scores), "--output", str(output),
                          "--generated", str(generated), "--reference", str(reference)]) == 0
    return scores, output


def attrs(scores: Path, mode: str) -> list[dict]:
    return [score_files.read_scores(path).attrs for path in sorted((scores / mode).glob("*.h5"))]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["supervised", "idealized"])
def test_signal_is_separated_on_the_independent_test_set(search, mode):
    scores, _ = search
    runs = attrs(scores, mode)
    assert [run["seed"] for run in runs] == list(SEEDS)
    for run in runs:
        assert run["auc"] > 0.9, run
        assert run["nsig"] == 1000 and run["n_test_signal"] == 1000 and run["n_test_background"] == 1500
    loaded = score_files.read_scores(scores / mode / score_files.score_name(1000, 0))
    assert metrics.auc(loaded.score, loaded.label) == pytest.approx(loaded.attrs["auc"])


@pytest.mark.slow
def test_supervised_and_idealized_share_their_test_set(search):
    scores, _ = search
    digests = {run["test_digest"] for mode in ("supervised", "idealized") for run in attrs(scores, mode)}
    assert len(digests) == 1


@pytest.mark.slow
def test_two_halves_of_one_background_are_indistinguishable(search):
    scores, _ = search
    for run in attrs(scores, "two-sample-SB"):
        assert abs(run["auc"] - 0.5) < 0.05, run
        assert run["region"] == "SB" and run["n_test_signal"] == run["n_test_background"]


@pytest.mark.slow
def test_evaluate_writes_every_figure_and_the_summaries(search):
    scores, output = search
    modes = ("supervised", "idealized", "two-sample-SB")
    names = [f"{kind}_{mode}" for kind in ("sic", "roc") for mode in modes]
    names += ["max_sic_vs_nsig", "auc_vs_nsig", "generated_vs_reference"]
    for name in names:
        for fmt in ("png", "pdf"):
            assert (output / f"{name}.{fmt}").stat().st_size > 10_000, name
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["modes"]) == set(modes)
    for mode in modes:
        (injection,) = summary["modes"][mode]["injections"]
        per_seed = [run["auc"] for run in attrs(scores, mode)]
        assert injection["auc"]["median"] == pytest.approx(np.median(per_seed))
        assert injection["auc"]["low"] <= injection["auc"]["median"] <= injection["auc"]["high"]
        assert injection["max_sic"]["median"] > 0
    assert summary["modes"]["supervised"]["injections"][0]["max_sic"]["median"] > 3
    assert set(summary["features"]["wasserstein"]["diffusion"]) == set(plotting.FEATURES)  # no generator attr
    table = (output / "summary.md").read_text()
    assert all(f"| {mode} |" in table for mode in modes)


# ---------------------------------------------------------------------------- bad input


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error and "Traceback" not in error
    return error


def tiny_events(blocks: list[tuple[float, int, int]]) -> processed.Events:
    """``(mjj [GeV], label, count)`` blocks of one-particle dijet events, each event different."""
    mjj = np.concatenate([np.full(n, value) for value, _, n in blocks]) + np.arange(sum(b[2] for b in blocks))
    label = np.concatenate([np.full(n, flag) for _, flag, n in blocks])
    particles = np.zeros((len(mjj), 2, 4, 3))
    particles[:, :, 0, 0] = 1.0
    jets = np.stack([np.full((len(mjj), 2), 1500.0), np.zeros((len(mjj), 2)), np.zeros((len(mjj), 2)),
                     np.full((len(mjj), 2), 100.0), np.ones((len(mjj), 2))], axis=-1)
    return processed.Events(particles, jets, mjj, label)


def fake_scores(directory: Path, nsig_seeds: list[tuple[int, int]], test_size: int = 40) -> None:
    """Score files of a made-up supervised training on a test set of ``test_size`` events."""
    test = tiny_events([(3400.0, 0, test_size // 2), (3500.0, 1, test_size - test_size // 2)])
    config = config_module.load(CONFIG)
    for nsig, seed in nsig_seeds:
        task = tasks.Task("supervised", "SR", test, test, test, nsig)
        scores = test.label + np.random.default_rng(seed).normal(size=len(test))
        score_files.write_scores(directory / score_files.score_name(nsig, seed), scores, task, seed, config, {})


def run_evaluate(scores: Path, output: Path, *extra: str) -> int:
    return evaluate.main(["--config", str(CONFIG), "--set", "classifier.seeds=1", "--scores", str(scores),
                          "--output", str(output), *extra])


def test_evaluate_refuses_scores_of_different_test_sets(tmp_path, capsys):
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0)], test_size=40)
    fake_scores(tmp_path / "scores" / "supervised", [(20, 0)], test_size=41)
    assert run_evaluate(tmp_path / "scores", tmp_path / "out") == 2
    assert "different test sets" in one_line_error(capsys)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_evaluate_refuses_missing_seeds(tmp_path, capsys):
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0), (10, 1), (20, 1)])
    assert run_evaluate(tmp_path / "scores", tmp_path / "out") == 2
    assert "nsig 20 lacks seed(s) 0" in one_line_error(capsys)


def test_evaluate_refuses_an_empty_mode_directory(tmp_path, capsys):
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0)])
    (tmp_path / "scores" / "cwola").mkdir()
    assert run_evaluate(tmp_path / "scores", tmp_path / "out") == 2
    assert "holds no score files" in one_line_error(capsys)


def test_evaluate_needs_generated_and_reference_together(tmp_path, capsys):
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0)])
    assert run_evaluate(tmp_path / "scores", tmp_path / "out", "--generated", str(tmp_path / "g.h5")) == 2
    assert "together" in one_line_error(capsys)


@pytest.mark.filterwarnings("ignore::lhco_diffusion.data.selection.SampleSizeWarning")
@pytest.mark.parametrize("extra, message", [
    (["--mode", "cwola", "--nsig", "5"], "needs --generated"),
    (["--mode", "two-sample"], "needs --generated"),
    (["--mode", "supervised", "--nsig", "999999"], "exceeds"),
])
def test_classify_refuses_impossible_requests(tmp_path, capsys, extra, message):
    data = tmp_path / "data.h5"
    with processed.EventWriter(data, npart=4) as writer:
        writer.append(tiny_events([(3400.0, 0, 60), (3500.0, 1, 30), (3000.0, 0, 30)]))
    argv = ["--config", str(CONFIG), "--set", "data.npart=4", "--data", str(data), *extra]
    assert classify.main(argv) == 2
    assert message in one_line_error(capsys)
