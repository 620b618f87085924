"""python -m lhco_diffusion.pipeline: the whole search end to end on the tiny configuration."""
from __future__ import annotations

import json

import pytest

from lhco_diffusion.commands import pipeline
from conftest import ROOT

NSIG = (30, 100)  # the tiny sample sets aside about 120 SR signal events for injection


@pytest.mark.slow
def test_pipeline_runs_end_to_end_and_finds_the_largest_injection(test_config, processed_file, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--config", str(ROOT / "configs" / "test.yaml"), "--set", f"paths.cache_dir={test_config.paths.cache_dir}",
            "--set", f"paths.run_dir={run}", "--set", "classifier.seeds=1", "--set", "sampling.n_events=600",
            "--set", f"classifier.nsig={list(NSIG)}", "--set", "classifier.n_background=150",
            "--set", "classifier.n_test_background=150"]  # leaves ~130 of ~430 SR background for idealized
    assert pipeline.main(args) == 0
    printed = capsys.readouterr().out
    assert str(run / "evaluation" / "summary.md") in printed
    summary = json.loads((run / "evaluation" / "summary.json").read_text())
    assert set(summary["modes"]) == {"cwola", "idealized"}
    for mode in summary["modes"].values():
        injections = {entry["nsig"]: entry for entry in mode["injections"]}
        assert sorted(injections) == list(NSIG)
    largest = max(NSIG)
    idealized = {entry["nsig"]: entry for entry in summary["modes"]["idealized"]["injections"]}
    assert idealized[largest]["max_sic"]["median"] > 1.0
    for name in ("sic_cwola.png", "roc_idealized.png", "max_sic_vs_nsig.png", "generated_vs_reference.png"):
        assert (run / "evaluation" / name).is_file()
    # a second run finds every step done and only re-evaluates
    assert pipeline.main(args) == 0
    assert "== classify" not in capsys.readouterr().out
