"""Launch safety: a lonely Horovod rank, disagreeing workers and a changed worker count are refused.

Slurm and horovod are simulated: launcher variables in the environment, a stand-in horovod
module for the in-process checks, and the real single-process Horovod of the venv (which, like
a build without MPI under srun, becomes rank 0 of 1) for the end-to-end refusal.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import tensorflow as tf

from lhco_diffusion import distributed
from lhco_diffusion.commands import train
from lhco_diffusion.workflow import checkpoints, training
from lhco_diffusion import config as config_module
from lhco_diffusion.errors import InputError

from conftest import CONFIGS, ROOT

LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "HOROVOD_", "LHCO_")


@pytest.fixture
def no_launcher(monkeypatch):
    """No launcher variables and no initialised Horovod in this process."""
    for name in list(os.environ):
        if name.startswith(LAUNCHER_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setattr(distributed, "_horovod", None)
    return monkeypatch


@pytest.mark.parametrize("variables, tasks", [
    ({}, 1),                                                              # plain python
    ({"SLURM_NTASKS": "16"}, 1),                                          # batch script or salloc shell
    ({"SLURM_NTASKS": "16", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1"}, 1),   # srun -n 1
    ({"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "4"}, 4),    # srun -n 4
    ({"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}, 4),                     # a step without STEP_NUM_TASKS
    ({"HOROVOD_SIZE": "2"}, 2),                                           # horovodrun -np 2
    ({"OMPI_COMM_WORLD_SIZE": "8"}, 8),                                   # mpirun -np 8
    ({"PMI_SIZE": "3"}, 3),
    ({"PMI_SIZE": "garbage"}, 1),
])
def test_launcher_tasks_counts_processes_not_the_allocation(variables, tasks, no_launcher):
    for name, value in variables.items():
        no_launcher.setenv(name, value)
    assert distributed.launcher_tasks()[0] == tasks


def _stand_in_horovod(size: int, peer_offset: int = 0) -> types.ModuleType:
    """A horovod.tensorflow that joined ``size`` workers; allgather adds a rank 1 whose int64
    values differ from this rank's by ``peer_offset``."""
    module = types.ModuleType("horovod.tensorflow")
    module.init = lambda: None
    module.size, module.rank, module.local_rank = (lambda: size), (lambda: 0), (lambda: 0)
    module.allgather = lambda tensor: tf.concat([tensor, tensor + peer_offset], axis=0)
    return module


def _stand_in(no_launcher, module) -> None:
    package = types.ModuleType("horovod")
    package.tensorflow = module
    no_launcher.setitem(sys.modules, "horovod", package)
    no_launcher.setitem(sys.modules, "horovod.tensorflow", module)


def test_a_lonely_rank_is_refused_with_the_rebuild_sentence(no_launcher):
    no_launcher.setenv("SLURM_STEP_ID", "0")
    no_launcher.setenv("SLURM_STEP_NUM_TASKS", "16")
    _stand_in(no_launcher, _stand_in_horovod(size=1))
    with pytest.raises(InputError, match=r"SLURM_STEP_NUM_TASKS=16: the launcher started 16 processes but "
                                         r"Horovod joined only 1 of them.*make install-gpu"):
        distributed.init()
    assert distributed._horovod is None


def test_all_ranks_joined_is_accepted(no_launcher):
    no_launcher.setenv("SLURM_STEP_ID", "0")
    no_launcher.setenv("SLURM_STEP_NUM_TASKS", "4")
    _stand_in(no_launcher, _stand_in_horovod(size=4))
    assert distributed.init() == distributed.Context(rank=0, size=4, local_rank=0)


def test_missing_or_disabled_horovod_under_a_launcher_is_refused(no_launcher):
    no_launcher.setenv("HOROVOD_SIZE", "2")
    no_launcher.setitem(sys.modules, "horovod.tensorflow", None)  # import fails
    with pytest.raises(InputError, match="horovod is not installed; rebuild Horovod with MPI"):
        distributed.init()
    no_launcher.setenv(distributed.DISABLE_VARIABLE, "1")
    with pytest.raises(InputError, match="LHCO_NO_HOROVOD=1 would make each train alone"):
        distributed.init()


def test_one_plain_process_needs_no_horovod(no_launcher):
    no_launcher.setenv("SLURM_NTASKS", "4")  # an salloc shell: one python, no srun step
    no_launcher.setitem(sys.modules, "horovod.tensorflow", None)
    assert distributed.init() == distributed.NullContext()


def test_workers_must_agree_on_the_configuration_and_run_directory(no_launcher):
    texts = {"configuration": "training: {epochs: 3}\n", "run directory": "/pscratch/run"}
    no_launcher.setattr(distributed, "_horovod", _stand_in_horovod(size=2, peer_offset=0))
    distributed.require_agreement(texts)  # identical digests on both ranks
    no_launcher.setattr(distributed, "_horovod", _stand_in_horovod(size=2, peer_offset=1))
    with pytest.raises(InputError, match="the workers disagree on the configuration: rank 1 differs from rank 0"):
        distributed.require_agreement(texts)


def test_train_refuses_a_lonely_rank_and_writes_nothing(tmp_path):
    """srun -n 4 with a Horovod that cannot join the tasks (here the venv's Gloo-only build)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(LAUNCHER_PREFIXES)}
    env.update(SLURM_NTASKS="4", SLURM_STEP_ID="0", SLURM_STEP_NUM_TASKS="4", SLURM_PROCID="0")
    result = subprocess.run(
        [sys.executable, "-m", "lhco_diffusion.train", "--config", str(CONFIGS / "test.yaml"),
         "--set", f"paths.run_dir={tmp_path / 'run'}", "--set", f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("error: SLURM_STEP_NUM_TASKS=4: the launcher started 4 processes but Horovod joined only 1 of them"
            in result.stderr)
    assert "make install-gpu" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_check_workers_sentences(tmp_path):
    assert checkpoints.check_workers(tmp_path, {"epoch": 3, "workers": 16}, 16, rescale=False) is None
    with pytest.raises(InputError, match=f"{tmp_path} was trained by 16 workers but this run has 8"):
        checkpoints.check_workers(tmp_path, {"epoch": 3, "workers": 16}, 8, rescale=False)
    assert "rescaling" in checkpoints.check_workers(tmp_path, {"epoch": 3, "workers": 16}, 8, rescale=True)
    assert "does not record" in checkpoints.check_workers(tmp_path, {"epoch": 3}, 8, rescale=False)


class _ScheduleProbe(tf.keras.callbacks.Callback):
    """Records the optimizer's step counter when training (re)starts."""

    def on_train_begin(self, logs=None):
        self.iterations = int(self.model.optimizer.iterations.numpy())


def _half_done_run(trained_checkpoint, tmp_path, **state_changes) -> tuple[Path, dict]:
    """A copy of the session's trained run whose ``last`` claims 1 of 2 epochs, with ``state_changes``."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_checkpoint.parent.parent, run_dir)
    last = run_dir / "checkpoints" / "last"
    state = {**checkpoints.read_state(last), "epoch": 1, "wait": 0, **state_changes}
    (last / "state.json").write_text(json.dumps({key: value for key, value in state.items() if value is not None}))
    return last, state


def _resumed(test_config, last: Path, steps_per_epoch: int) -> list[str]:
    """Overrides that resume ``last`` for its second and final epoch of ``steps_per_epoch`` steps."""
    return [f"paths.run_dir={last.parent.parent}", f"paths.cache_dir={test_config.paths.cache_dir}",
            "training.epochs=2", f"training.steps_per_epoch={steps_per_epoch}"]


def _argv(overrides: list[str]) -> list[str]:
    return ["--config", str(CONFIGS / "test.yaml"), "--resume", *(f"--set={value}" for value in overrides)]


@pytest.mark.slow
def test_resuming_with_another_worker_count_is_refused_unless_rescaled(test_config, trained_checkpoint, tmp_path,
                                                                       capsys):
    assert checkpoints.read_state(trained_checkpoint)["workers"] == 1
    last, state = _half_done_run(trained_checkpoint, tmp_path, workers=4)  # as if 4 workers had trained it
    # 4 steps per epoch now (as another worker count would give; the run so far took 6 per epoch)
    overrides = _resumed(test_config, last, steps_per_epoch=4)

    assert train.main(_argv(overrides)) == 2
    assert f"error: {last} was trained by 4 workers but this run has 1" in capsys.readouterr().err
    assert checkpoints.read_state(last) == state  # untouched

    # accepted on request; the cosine decay resumes at epoch 1 of 2, i.e. at step 1 x 4, not at
    # the 12 steps the optimizer had counted
    probe = _ScheduleProbe()
    summary = training.train(config_module.load(CONFIGS / "test.yaml", overrides), resume=True,
                             rescale_workers=True, callbacks=[probe])
    assert "rescaling" in capsys.readouterr().err
    assert probe.iterations == 4
    assert summary["epochs"] == 2 and checkpoints.read_state(last)["workers"] == 1


@pytest.mark.slow
def test_checkpoints_without_a_worker_count_still_resume(test_config, trained_checkpoint, tmp_path, capsys):
    last, _ = _half_done_run(trained_checkpoint, tmp_path, workers=None)  # as written before counts were stored
    assert train.main(_argv(_resumed(test_config, last, steps_per_epoch=2))) == 0
    assert capsys.readouterr().err.count("does not record how many workers trained it") == 1
    assert checkpoints.read_state(last)["workers"] == 1
