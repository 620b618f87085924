"""Model inputs -> batched ``tf.data`` pipelines, sharded by (Horovod) rank.

Each rank takes an equally sized, disjoint shard so all ranks run the same number of steps;
the rank and the number of ranks are arguments (this module never imports horovod).
With ``pad_to_longest`` every batch is cut to its own longest jet: particles are pT-ordered and
padding comes last, so dropping the trailing all-padding slots loses nothing, and attention
over P slots costs O(P^2).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from lhco_diffusion.data.transforms import ModelInputs
from lhco_diffusion.errors import InputError


def shard(n: int, rank: int, size: int) -> np.ndarray:
    """Indices of events ``0..n-1`` for ``rank`` of ``size``: disjoint, n // size each (rest dropped)."""
    if not 0 <= rank < size:
        raise InputError(f"rank {rank} is outside 0..{size - 1}")
    per_rank = n // size
    if per_rank == 0:
        raise InputError(f"{n} events cannot be shared among {size} workers")
    return np.arange(rank, per_rank * size, size)


@tf.function(reduce_retracing=True)
def trim_to_longest(particles: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Cut particles (B, 2, P, F) and mask (B, 2, P) to the longest jet of the batch (at least 1 slot)."""
    longest = tf.reduce_max(tf.cast(tf.reduce_sum(mask, axis=-1), tf.int32))
    longest = tf.maximum(longest, 1)
    return particles[:, :, :longest], mask[:, :, :longest]


def steps_per_epoch(n: int, batch_size: int, size: int = 1) -> int:
    """Batches one rank draws per epoch from n events shared among ``size`` ranks."""
    return -(-(n // size) // batch_size)


def diffusion_dataset(inputs: ModelInputs, batch_size: int, rank: int = 0, size: int = 1,
                      shuffle: bool = True, seed: int = 0, pad_to_longest: bool = True,
                      first_batch: int = 0) -> tf.data.Dataset:
    """Batches ``(particles (B, 2, Pb, 3), jets (B, 2, 5), condition (B, 1), mask (B, 2, Pb))``.

    Pb is the batch's longest jet with ``pad_to_longest``, else P. Without ``shuffle`` the shard
    of ``rank`` is one pass in order. With ``shuffle`` it is an endless stream of epochs
    (``steps_per_epoch`` batches each, the last one possibly short), epoch e in the order of a
    permutation drawn from (``seed``, e) alone, starting after its first ``first_batch``
    batches: a run resumed after k training steps sees exactly the batches the uninterrupted run
    would have. Only event indices pass through the
    pipeline; each batch is gathered from the arrays in memory, so no second copy is held.
    """
    events = shard(len(inputs), rank, size)
    arrays = [np.asarray(array, np.float32)
              for array in (inputs.particles, inputs.jets, inputs.condition, inputs.mask)]

    def take(rows):  # numpy: the arrays' entries for one batch of shard positions
        return [array[events[rows]] for array in arrays]

    def gather(rows):
        batch = tf.numpy_function(take, [rows], [tf.float32] * 4)
        for tensor, array in zip(batch, arrays):
            tensor.set_shape((None, *array.shape[1:]))
        return tuple(batch)

    if shuffle:
        order = tf.data.Dataset.counter().flat_map(
            lambda epoch: _epoch_batches(len(events), batch_size, seed, epoch)).skip(first_batch)
    else:
        order = tf.data.Dataset.range(len(events)).batch(batch_size)
    dataset = order.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if pad_to_longest:
        dataset = dataset.map(_trim_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: tf.Tensor) -> tf.data.Dataset:
    """Positions 0..n-1 in the order of epoch ``epoch``'s permutation, in batches."""
    keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)


def _trim_batch(particles, jets, condition, mask):
    particles, mask = trim_to_longest(particles, mask)
    return particles, jets, condition, mask
