"""Data-parallel training with Horovod, and its single-process fallback.

This is the only module that imports horovod. Everything else asks it for a ``Context``
(rank, size, local_rank, is_root) and for the few collective operations training needs:

    context = distributed.init()               # Horovod if launched by horovodrun/srun/mpirun
    tape = distributed.wrap_tape(tape)         # gradients averaged over the workers
    callbacks = [distributed.broadcast_callback(), distributed.average_metrics_callback()]
    everything = distributed.allgather(local_scores)

Without a multi-process launcher every call is the single-process identity (rank 0 of 1), so a
laptop needs no horovod. Under a launcher that started several processes, ``init`` refuses to
go on unless Horovod joins them all (a Horovod without MPI, started by ``srun``, leaves each
process alone: rank 0 of 1, each training its own copy), and ``require_agreement`` refuses
workers started with different configurations.
On GPU machines each process sees only the GPU of its local rank.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf

from lhco_diffusion.errors import InputError

DISABLE_VARIABLE = "LHCO_NO_HOROVOD"  # once a way to skip Horovod under a launcher: now refused there
# Processes started, as told by horovodrun (Gloo), Open MPI's and MPICH's launchers.
_LAUNCHER_SIZE_VARIABLES = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
# Slurm tells the tasks of an srun step apart from the allocation: SLURM_NTASKS alone is also set
# in a batch script or an salloc shell that runs one plain `python`, so it counts only in a step.
_SLURM_STEP_TASKS, _SLURM_STEP_ID, _SLURM_TASKS = "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_NTASKS"
REBUILD_HINT = ("rebuild Horovod with MPI and NCCL (`make install-gpu`, which checks "
                "`horovodrun --check-build`) or start the workers with horovodrun")

_horovod = None  # the initialised horovod.tensorflow module, or None in a single process


def _keras_callbacks():
    import horovod.tensorflow.keras.callbacks as callbacks

    return callbacks


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process stands among the workers of a data-parallel run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_root(self) -> bool:
        """True on the one process that writes checkpoints, logs and plots."""
        return self.rank == 0


NullContext = Context  # the single-process context: rank 0 of 1


def launcher_tasks() -> tuple[int, str]:
    """How many processes of this program the launcher started, and the variable that says so.

    ``(1, "")`` without a launcher. Slurm's count is ``SLURM_STEP_NUM_TASKS`` of the srun step
    (``SLURM_NTASKS`` only inside a step that lacks it).
    """
    variables = list(_LAUNCHER_SIZE_VARIABLES)
    if _SLURM_STEP_TASKS in os.environ:
        variables.append(_SLURM_STEP_TASKS)
    elif _SLURM_STEP_ID in os.environ:
        variables.append(_SLURM_TASKS)
    tasks, source = 1, ""
    for variable in variables:
        try:
            count = int(os.environ.get(variable, ""))
        except ValueError:
            continue
        if count > tasks:
            tasks, source = count, variable
    return tasks, source


def init() -> Context:
    """Initialise Horovod when launched in parallel (else nothing) and pin this process's GPU.

    Raises ``InputError`` when the launcher started N > 1 processes and Horovod is disabled,
    missing, or joins fewer than N of them: each would train alone and all would write one run.
    """
    global _horovod
    tasks, variable = launcher_tasks()
    if _horovod is None and tasks > 1:
        started = f"{variable}={tasks}: the launcher started {tasks} processes"
        if os.environ.get(DISABLE_VARIABLE, "0") == "1":
            raise InputError(f"{started} but {DISABLE_VARIABLE}=1 would make each train alone; unset it, "
                             "or start one process")
        try:
            import horovod.tensorflow as hvd
        except ImportError:
            raise InputError(f"{started} but horovod is not installed; {REBUILD_HINT}") from None
        hvd.init()
        if hvd.size() < tasks:
            raise InputError(f"{started} but Horovod joined only {hvd.size()} of them, so each would train "
                             f"its own copy into one run directory (a Horovod without MPI under srun); "
                             f"{REBUILD_HINT}")
        _horovod = hvd
    context = current()
    _pin_gpu(context.local_rank)
    return context


def require_agreement(texts: dict[str, str]) -> None:
    """Refuse to go on unless every worker holds the same value of each named text.

    ``texts``, e.g. ``{"configuration": yaml_text, "run directory": path}``, are compared by
    SHA-256 digest across the workers; a difference raises ``InputError`` on every worker.
    """
    if _horovod is None:
        return
    for name, text in texts.items():
        digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little", signed=True)
        digests = allgather(np.array([digest], np.int64))
        differing = np.flatnonzero(digests != digests[0])
        if differing.size:
            raise InputError(f"the workers disagree on the {name}: rank {differing[0]} differs from rank 0; "
                             "start every worker with the same command, --set values and working directory")


def current() -> Context:
    """The context of this process (single-process until ``init`` started Horovod)."""
    if _horovod is None:
        return NullContext()
    return Context(_horovod.rank(), _horovod.size(), _horovod.local_rank())


def _pin_gpu(local_rank: int) -> None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    try:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
    except RuntimeError:  # devices already initialised (init called twice): keep the first pinning
        pass


def wrap_tape(tape: tf.GradientTape) -> tf.GradientTape:
    """A tape whose ``gradient`` averages the gradients over all workers."""
    if _horovod is None:
        return tape
    return _horovod.DistributedGradientTape(tape)


def broadcast_variables(variables, root_rank: int = 0) -> None:
    """Overwrite ``variables`` on every worker with the values of ``root_rank``."""
    if _horovod is not None:
        _horovod.broadcast_variables(variables, root_rank=root_rank)


class _BroadcastAtStart(tf.keras.callbacks.Callback):
    def __init__(self, variables):
        super().__init__()
        self.variables = variables

    def on_train_begin(self, logs=None):
        broadcast_variables(self.variables)


def broadcast_callback(variables=None) -> tf.keras.callbacks.Callback:
    """Keras callback: make every worker start from rank 0's state.

    With ``variables`` they are broadcast before the first step (the optimizer's state, equal
    on every worker at the start or after restoring one checkpoint, is left alone); without,
    Horovod's callback broadcasts the model's and the optimizer's variables after the first step.
    """
    if _horovod is None:
        return tf.keras.callbacks.Callback()
    if variables is not None:
        return _BroadcastAtStart(variables)
    return _keras_callbacks().BroadcastGlobalVariablesCallback(0)


def average_metrics_callback() -> tf.keras.callbacks.Callback:
    """Keras callback: average the epoch metrics over the workers before other callbacks see them."""
    if _horovod is None:
        return tf.keras.callbacks.Callback()
    return _keras_callbacks().MetricAverageCallback()


def allreduce_mean(value: float, name: str) -> float:
    """The mean of a scalar over all workers."""
    if _horovod is None:
        return float(value)
    return float(_horovod.allreduce(tf.constant(value, tf.float64), op=_horovod.Average, name=name))


def allgather(array: np.ndarray) -> np.ndarray:
    """Concatenate the first axes of every worker's ``array`` in rank order."""
    if _horovod is None:
        return np.asarray(array)
    return _horovod.allgather(tf.convert_to_tensor(array)).numpy()


def barrier() -> None:
    """Wait until every worker reaches this point."""
    allreduce_mean(0.0, name="barrier")
