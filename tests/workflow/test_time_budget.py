"""training.time_budget_minutes: a run stops after the epoch in which its budget ran out, writes
its checkpoints, and a resumed run counts the time already spent."""
from __future__ import annotations

import json
import types
import warnings

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


class _Clock:
    """A stand-in for time.monotonic that an epoch advances by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _epochs_until_stopped(monkeypatch, epochs: int, report: bool = True) -> tuple[int, list]:
    """Run a 10-minute ``TimeBudget`` over epochs of 60 s (the first, with tracing) then 20 s:
    (the epoch after which it stopped, the BudgetWarnings it gave)."""
    clock = _Clock()
    monkeypatch.setattr(training.time, "monotonic", clock)
    budget = training.TimeBudget(10.0, epochs=epochs, report=report)
    model = types.SimpleNamespace(stop_training=False)
    budget.set_model(model)
    budget.on_train_begin()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(epochs):
            clock.now += 60.0 if epoch == 0 else 20.0
            budget.on_epoch_end(epoch)
            if model.stop_training:
                break
    return epoch + 1, [w for w in caught if issubclass(w.category, training.BudgetWarning)]


def test_a_budget_that_ends_before_the_schedule_says_where_after_the_second_epoch(monkeypatch):
    """600 s at 20 s an epoch after a 60 s first epoch: the run stops after epoch 28, which the
    warning after epoch 2 predicts; one warning, and none for a schedule that fits or off rank 0."""
    stopped, caught = _epochs_until_stopped(monkeypatch, epochs=40)
    assert stopped == 28
    assert len(caught) == 1
    assert "near epoch 28 of 40" in str(caught[0].message) and "training.epochs=28" in str(caught[0].message)
    assert _epochs_until_stopped(monkeypatch, epochs=28) == (28, [])
    assert _epochs_until_stopped(monkeypatch, epochs=40, report=False)[1] == []
