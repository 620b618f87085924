"""training.time_budget_minutes: a run stops after the epoch in which its budget ran out, writes
its checkpoints, and a resumed run counts the time already spent."""
from __future__ import annotations

import json

import pytest

from lhco_diffusion import config as config_module
from lhco_diffusion.workflow import training


@pytest.mark.slow
def test_training_stops_after_the_epoch_that_used_up_the_budget(test_config, processed_file, tmp_path):
    overrides = [f"paths.run_dir={tmp_path}", "training.steps_per_epoch=2", "training.epochs=50",
                 "training.time_budget_minutes=0.0001"]  # 6 ms: used up by the first epoch
    config = config_module.from_dict(test_config.to_dict(), "test.yaml", overrides)
    summary = training.train(config)
    assert summary["epochs"] == summary["epochs_this_run"] == 1
    state = json.loads((tmp_path / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 1 and state["training_seconds"] > 0.006
    resumed = training.train(config, resume=True)  # the budget is spent: nothing more to do
    assert resumed["epochs_this_run"] == 0 and resumed["epochs"] == 1
    # 6 ms more than already spent: one more epoch (the first one, with tracing, took far longer)
    budget = state["training_seconds"] / 60.0 + 0.0001
    longer = config_module.from_dict(config.to_dict(), "test.yaml", [f"training.time_budget_minutes={budget}"])
    assert training.train(longer, resume=True)["epochs"] == 2
