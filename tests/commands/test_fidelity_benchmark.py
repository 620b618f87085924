"""benchmarks/fidelity.py on the tiny configuration: --generator-only writes the samples that judge
the generator and their reports, trains no classifier, and a rerun reuses the run only when its
configuration is the same; a full run adds the template and the classifiers, which a later
--generator-only keeps."""
from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from conftest import ROOT


def load_benchmark():
    spec = importlib.util.spec_from_file_location("fidelity_benchmark", ROOT / "benchmarks" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_lines(output: str) -> list[str]:
    """The rows of the benchmark's printed table (progress lines aside)."""
    return [line for line in output.splitlines() if line.startswith("|")]


@pytest.mark.slow
def test_generator_only_then_full_run_reuse_their_own_run_and_keep_each_others_figures(test_config, processed_file,
                                                                                           tmp_path, capsys):
    benchmark = load_benchmark()
    run = tmp_path / "run"
    full_run = ["--config", str(ROOT / "configs" / "test.yaml"),
                "--set", f"paths.cache_dir={test_config.paths.cache_dir}", "--set", f"paths.run_dir={run}",
                "--set", "training.steps_per_epoch=6", "--set", "sampling.n_events=120",
                "--set", "classifier.n_generated=120", "--set", "classifier.seeds=1", "--set", "classifier.epochs=1",
                "--set", "classifier.min_epochs=1", "--set", "classifier.nsig=[50]",
                "--set", "classifier.n_background=150", "--set", "classifier.n_test_background=100"]
    args = full_run + ["--generator-only"]
    assert benchmark.main(args) == 0
    table = capsys.readouterr().out
    assert "generator only" in table and "two-sample AUC" not in table and "cwola" not in table
    for sample in ("sideband", "SR at the background's mjj", "SR particles given the true jets"):
        assert f"worst W1 / noise floor, {sample} |" in table
        assert f"worst W1 / noise floor by jet m/pT fifth (diagnostic), {sample} |" in table
    samples = run / "samples"
    assert sorted(path.name for path in samples.iterdir()) == ["SB.h5", "SR_background_mjj.h5", "SR_true_jets.h5"]
    assert not (run / "scores").exists()
    record = json.loads((run / "benchmark.json").read_text())
    assert record["classifiers"] == {} and set(record["fidelity"]) == {"SB", "SR_background_mjj", "SR_true_jets"}
    report = json.loads((run / "fidelity" / "fidelity_SB.json").read_text())
    assert report["two_sample"] == {}

    # another setting is refused, with the setting named; nothing is overwritten
    written = {path.name: path.stat().st_mtime_ns for path in samples.iterdir()}
    assert benchmark.main(args + ["--set", "training.learning_rate=0.002"]) == 2
    assert "training.learning_rate 0.001 there, 0.002 here" in capsys.readouterr().err

    # a key the stored configuration predates counts as its default: the run is reused, not retrained
    stored = run / "checkpoints" / "last" / "config.yaml"
    settings = yaml.safe_load(stored.read_text())
    del settings["transforms"]["closure_sum"]
    stored.write_text(yaml.safe_dump(settings))
    assert benchmark.main(args) == 0
    assert "n/a (not timed)" not in capsys.readouterr().out  # the step time of the run that trained
    assert {path.name: path.stat().st_mtime_ns for path in samples.iterdir()} == written


    # a full run in the same directory adds the template and the classifiers to what is there
    assert benchmark.main(full_run) == 0
    full_table = table_lines(capsys.readouterr().out)
    for line in ("two-sample AUC, sideband", "cwola max SIC", "idealized max SIC", "cwola / idealized max SIC",
                 "worst W1 / noise floor, SR template (KDE mjj)"):
        assert any(row.startswith(f"| {line} |") for row in full_table)
    assert {path.name: path.stat().st_mtime_ns for path in samples.iterdir() if path.name in written} == written
    full_record = json.loads((run / "benchmark.json").read_text())
    assert set(full_record["classifiers"]) == {"two-sample", "cwola", "idealized"}
    assert set(full_record["fidelity"]) == set(benchmark.SAMPLES)
    scores = sorted(path.relative_to(run) for path in (run / "scores").rglob("*") if path.is_file())
    assert len(scores) == 3

    # --generator-only in the finished run's directory trains and generates nothing and reports
    # what the full run wrote: benchmark.json keeps the classifier figures
    assert benchmark.main(args) == 0
    assert table_lines(capsys.readouterr().out) == full_table
    assert json.loads((run / "benchmark.json").read_text()) == full_record
    assert sorted(path.relative_to(run) for path in (run / "scores").rglob("*") if path.is_file()) == scores
