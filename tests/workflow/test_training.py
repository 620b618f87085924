"""python -m lhco_diffusion.train: learning, checkpoints, exact resumption, divergence, Horovod."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion.commands import train as train_command
from lhco_diffusion.data import mjj_weights, transforms
from lhco_diffusion.models.build import build_generator
from lhco_diffusion.workflow import checkpoints, training
from conftest import ROOT

FAST = ["training.steps_per_epoch=4", "data.pad_to_longest=false"]
# Each generator with its own optimiser (flow matching: AdamW with weight decay, clipping 0.5)
GENERATORS = {
    "diffusion": [],
    "flow_matching": ["generator=flow_matching", "sampling.solver=midpoint", "training.optimizer=adamw",
                      "training.weight_decay=5e-5", "training.clip_norm=0.5"],
}


def _config(test_config, run_dir: Path, *overrides: str):
    from lhco_diffusion import config as config_module

    values = test_config.to_dict()
    return config_module.from_dict(values, "test.yaml", [f"paths.run_dir={run_dir}", *FAST, *overrides])


def _weights(directory: Path) -> list[np.ndarray]:
    return checkpoints.load(directory).model.get_weights()


class Interrupt(tf.keras.callbacks.Callback):
    """Kill the run (as Ctrl-C or a Slurm time limit would) at the end of epoch ``after``."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("generator", GENERATORS)
def test_one_epoch_lowers_the_test_loss(test_config, processed_file, tmp_path, generator):
    # flow matching starts further from its optimum (target variance 2 per feature, not 1): a larger step
    rate = {"diffusion": [], "flow_matching": ["training.learning_rate=3e-3"]}[generator]
    config = _config(test_config, tmp_path / "run", "training.epochs=1", "training.steps_per_epoch=12",
                     *GENERATORS[generator], *rate)
    data = training.training_data(config, processed_file)
    test_batches = training.dataset.diffusion_dataset(data.test, 64, shuffle=False, pad_to_longest=False)

    def test_loss(model):
        model.compile(optimizer=tf.keras.optimizers.Adam())
        return model.evaluate(test_batches, verbose=0, return_dict=True)["loss"]

    tf.keras.utils.set_random_seed(config.training.seed)
    untrained = build_generator(config)
    before = test_loss(untrained)
    summary = training.train(config)
    trained = checkpoints.load(summary["last"]).model
    assert trained.process == untrained.process == generator
    after = test_loss(trained)
    assert summary["epochs"] == 1
    assert after < 0.9 * before, (before, after)


def test_checkpoint_records_what_sampling_needs(test_config, processed_file, tmp_path):
    config = _config(test_config, tmp_path / "run", "training.epochs=1")
    summary = training.train(config)
    restored = checkpoints.load(summary["best"])
    assert restored.state["epoch"] == 1
    assert restored.config.jet_model == config.jet_model
    assert restored.stats.jet_mean.shape == (5,)
    csv = (tmp_path / "run" / "training_log.csv").read_text().splitlines()
    assert csv[0].startswith("epoch") and len(csv) == 2


class RecordWeightTable(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.table = self.model.mjj_weight_table


def test_mjj_weighted_training_weighs_by_its_own_training_sideband(test_config, processed_file, tmp_path):
    config = _config(test_config, tmp_path / "run", "training.epochs=1", "training.mjj_weight_power=0.5")
    recorder = RecordWeightTable()
    training.train(config, callbacks=[recorder])
    data = training.training_data(config, processed_file)
    signal_region = transforms.condition(data.stats, np.asarray(config.data.signal_region))[:, 0]
    expected = mjj_weights.condition_weight_table(data.train.condition[:, 0], tuple(signal_region), 0.5)
    np.testing.assert_array_equal(recorder.table.weights, expected.weights)
    assert np.mean(expected.weight_of(data.train.condition[:, 0])) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("generator", GENERATORS)
def test_resumed_run_matches_the_uninterrupted_one(test_config, processed_file, tmp_path, generator):
    settings = ["training.epochs=3", "training.warmup_epochs=1", *GENERATORS[generator]]
    whole = _config(test_config, tmp_path / "whole", *settings)
    training.train(whole)
    split = _config(test_config, tmp_path / "split", *settings)
    with pytest.raises(KeyboardInterrupt):
        training.train(split, callbacks=[Interrupt(after=2)])
    assert checkpoints.read_state(tmp_path / "split" / "checkpoints" / "last")["epoch"] == 2
    summary = training.train(split, resume=True)
    assert summary["epochs"] == 3 and summary["epochs_this_run"] == 1
    for uninterrupted, resumed in zip(_weights(tmp_path / "whole" / "checkpoints" / "last"),
                                      _weights(tmp_path / "split" / "checkpoints" / "last")):
        np.testing.assert_allclose(resumed, uninterrupted, rtol=1e-5, atol=1e-6)
    log = (tmp_path / "split" / "training_log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["0", "1", "2"]


def test_an_existing_run_is_not_overwritten_without_resume(test_config, processed_file, tmp_path, capsys):
    config = _config(test_config, tmp_path / "run", "training.epochs=1")
    training.train(config)
    stamp = (tmp_path / "run" / "checkpoints" / "last" / "state.json").stat().st_mtime_ns
    code = train_command.main(["--config", str(ROOT / "configs" / "test.yaml"),
                               "--set", f"paths.run_dir={tmp_path / 'run'}",
                               "--set", f"paths.cache_dir={test_config.paths.cache_dir}"])
    assert code == 2
    assert "pass --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoints" / "last" / "state.json").stat().st_mtime_ns == stamp


def test_a_run_is_not_resumed_under_another_model(test_config, processed_file, tmp_path, capsys):
    """A finished run is not reported as this configuration's model when the model changed
    (``make train`` after a pull that widened the demo's jet network), and an unfinished one is
    not continued with it; settings of the training alone may change."""
    training.train(_config(test_config, tmp_path / "run", "training.epochs=1"))
    stamp = (tmp_path / "run" / "checkpoints" / "last" / "state.json").stat().st_mtime_ns
    args = ["--config", str(ROOT / "configs" / "test.yaml"), "--resume", "--set", f"paths.run_dir={tmp_path / 'run'}",
            "--set", f"paths.cache_dir={test_config.paths.cache_dir}", "--set", "training.steps_per_epoch=4",
            "--set", "data.pad_to_longest=false"]
    for change in ("jet_model.projection_dim=24", "transforms.pt_rel_transform=log"):
        assert train_command.main(args + ["--set", "training.epochs=1", "--set", change]) == 2
        key, value = change.split("=")
        assert f"{key} is {value} in " in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoints" / "last" / "state.json").stat().st_mtime_ns == stamp
    assert train_command.main(args + ["--set", "training.epochs=2", "--set", "training.learning_rate=5e-4"]) == 0
    assert checkpoints.read_state(tmp_path / "run" / "checkpoints" / "last")["epoch"] == 2


def test_diverging_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
        test_config, processed_file, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--config", str(ROOT / "configs" / "test.yaml"), "--set", f"paths.run_dir={run}",
            "--set", f"paths.cache_dir={test_config.paths.cache_dir}", "--set", "training.steps_per_epoch=4"]
    assert train_command.main(args + ["--set", "training.epochs=1"]) == 0
    good = _weights(run / "checkpoints" / "last")
    code = train_command.main(args + ["--set", "training.epochs=4", "--set", "training.learning_rate=1e30",
                                      "--set", "training.clip_norm=1e30", "--resume"])
    message = capsys.readouterr().err
    assert code == 3
    assert "training loss became" in message and "epoch 1" in message and "intact" in message
    assert checkpoints.read_state(run / "checkpoints" / "last")["epoch"] == 1
    for before, after in zip(good, _weights(run / "checkpoints" / "last")):
        np.testing.assert_array_equal(after, before)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("horovodrun", path=os.path.dirname(sys.executable)) is None,
                    reason="horovodrun is not installed next to this Python (make install builds it)")
@pytest.mark.parametrize("generator", GENERATORS)
def test_horovodrun_two_ranks_train_identically_on_disjoint_shards(test_config, processed_file, tmp_path, generator):
    run, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    command = [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable,
               str(ROOT / "tests" / "horovod_probe.py"), str(probe),
               "--config", str(ROOT / "configs" / "test.yaml"),
               "--set", f"paths.run_dir={run}", "--set", f"paths.cache_dir={test_config.paths.cache_dir}",
               "--set", "training.epochs=2", "--set", "training.steps_per_epoch=3",
               *[option for setting in GENERATORS[generator] for option in ("--set", setting)]]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["size"] for rank in ranks] == [2, 2]
    np.testing.assert_array_equal(np.load(probe / "weights0.npy"), np.load(probe / "weights1.npy"))
    shards = [set(rank["shard"]) for rank in ranks]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert len(shards[0]) == len(shards[1]) == ranks[0]["n_train"] // 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best", "last"]
    for part in ("train", "validation"):
        assert len(list((run / "tensorboard" / part).iterdir())) == 1  # one writer: rank 0
    assert len((run / "training_log.csv").read_text().splitlines()) == 3
    assert "resuming" not in result.stdout
    assert result.stdout.count("finished after epoch 2") == 1
