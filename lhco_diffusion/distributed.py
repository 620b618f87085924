"""Data-parallel training with Horovod, and its single-process fallback.

This is the only module that imports horovod. Everything else asks it for a ``Context``
(rank, size, local_rank, is_root) and for the few collective operations training needs:

    context = distributed.init()               # Horovod if launched by horovodrun/srun/mpirun
    tape = distributed.wrap_tape(tape)         # gradients averaged over the workers
    callbacks = [distributed.broadcast_callback(), distributed.average_metrics_callback()]
    everything = distributed.allgather(local_scores)

Without horovod installed, without a multi-process launcher, or with ``LHCO_NO_HOROVOD=1``,
every call is the single-process identity (rank 0 of 1), so a laptop needs nothing extra.
On GPU machines each process sees only the GPU of its local rank.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

DISABLE_VARIABLE = "LHCO_NO_HOROVOD"
# Set by horovodrun (Gloo), Open MPI / MPICH launchers and Slurm's srun respectively.
_LAUNCHER_SIZE_VARIABLES = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")

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


def launched_in_parallel() -> bool:
    """True when a launcher started more than one process of this program."""
    for variable in _LAUNCHER_SIZE_VARIABLES:
        try:
            if int(os.environ.get(variable, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def init() -> Context:
    """Initialise Horovod when launched in parallel (else nothing) and pin this process's GPU."""
    global _horovod
    if _horovod is None and launched_in_parallel() and os.environ.get(DISABLE_VARIABLE, "0") != "1":
        try:
            import horovod.tensorflow as hvd
        except ImportError as error:
            raise RuntimeError(
                "several processes were launched but horovod is not installed; run `make install` "
                "or set LHCO_NO_HOROVOD=1 to train in one process"
            ) from error
        hvd.init()
        _horovod = hvd
    context = current()
    _pin_gpu(context.local_rank)
    return context


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
