"""benchmarks/fidelity.py on the tiny configuration: --generator-only writes the samples that judge
the generator and their reports, trains no classifier, and a rerun reuses the run only when its
configuration is the same."""
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


@pytest.mark.slow
def test_generator_only_judges_the_generator_and_reuses_only_its_own_run(test_config, processed_file, tmp_path,
                                                                          capsys):
    benchmark = load_benchmark()
    run = tmp_path / "run"
    args = ["--config", str(ROOT / "configs" / "test.yaml"), "--generator-only",
            "--set", f"paths.cache_dir={test_config.paths.cache_dir}", "--set", f"paths.run_dir={run}",
            "--set", "training.steps_per_epoch=6", "--set", "sampling.n_events=120",
            "--set", "classifier.n_generated=120"]
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
