"""Model inputs -> batched ``tf.data`` pipelines, sharded by (Horovod) rank.

Each rank takes an equally sized, disjoint shard so all ranks run the same number of steps;
the rank and the number of ranks are arguments (this module never imports horovod).
With ``pad_to_longest`` every batch is cut to its own longest jet: particles are pT-ordered and
padding comes last, so dropping the trailing all-padding slots loses nothing, and attention
over P slots costs O(P^2).

Multiplicity buckets (``bucket_window``): each epoch's permutation is cut into windows of
``bucket_window`` batches; inside a window the events are ordered by their longest jet
(max of the two jets' N), cut into batches, and the window's batches are shuffled. Every event
is still seen once per epoch, every batch holds ``batch_size`` events except the epoch's last
(exactly as without buckets, so ``steps_per_epoch`` and the batch-size distribution are
unchanged), but a batch carries only the padding of similar jets. Batches are then padded to
their longest jet rounded up to a multiple of ``PAD_MULTIPLE`` slots (at most P), which caps the
distinct batch shapes (and so XLA compilations) at P / ``PAD_MULTIPLE`` + 1 per batch size.
A batch of short jets holds fewer real particles than a random one: the training loop weights
the per-particle loss by real particles per batch (``models.generator``) to stay unbiased.
``multiplicity_buckets`` groups events the same way for generation and likelihoods.
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


PAD_MULTIPLE = 16  # bucketed batches are padded to a multiple of this many particle slots


def longest_jet(mask: np.ndarray) -> np.ndarray:
    """(B,) int: the larger of the two jets' real particle counts, from mask (B, 2, P)."""
    return np.asarray(mask).sum(axis=-1).max(axis=-1).astype(int)


def padded_width(longest: int, npart: int, multiple: int = PAD_MULTIPLE) -> int:
    """Slots for a batch whose longest jet has ``longest`` particles: rounded up to a multiple of
    ``multiple``, at least 1 and at most ``npart``."""
    return int(min(npart, max(1, -(-int(longest) // multiple) * multiple)))


def multiplicity_buckets(mask: np.ndarray, bucket_size: int, multiple: int = PAD_MULTIPLE
                         ) -> list[tuple[np.ndarray, int]]:
    """Events of mask (B, 2, P) grouped by their longest jet: ``[(rows, width), ...]``.

    rows: indices into the B events, ``bucket_size`` per bucket (the last may be fewer), in
    increasing order of the longest jet; width: the bucket's slots (``padded_width``). Every
    event is in exactly one bucket.
    """
    longest = longest_jet(mask)
    order = np.argsort(longest, kind="stable")
    return [(rows, padded_width(longest[rows].max(), mask.shape[-1], multiple))
            for rows in np.split(order, np.arange(bucket_size, len(order), bucket_size))]


def steps_per_epoch(n: int, batch_size: int, size: int = 1) -> int:
    """Batches one rank draws per epoch from n events shared among ``size`` ranks."""
    return -(-(n // size) // batch_size)


def diffusion_dataset(inputs: ModelInputs, batch_size: int, rank: int = 0, size: int = 1,
                      shuffle: bool = True, seed: int = 0, pad_to_longest: bool = True,
                      first_batch: int = 0, bucket_window: int | None = None) -> tf.data.Dataset:
    """Batches ``(particles (B, 2, Pb, 3), jets (B, 2, 5), condition (B, 1), mask (B, 2, Pb))``.

    Pb is the batch's longest jet with ``pad_to_longest``, else P; with ``bucket_window`` (batches
    per window, shuffled streams only) the batches are multiplicity buckets (module docstring)
    and Pb is rounded up to a multiple of ``PAD_MULTIPLE``. Without ``shuffle`` the shard
    of ``rank`` is one pass in order. With ``shuffle`` it is an endless stream of epochs
    (``steps_per_epoch`` batches each, the last one possibly short), epoch e in the order of a
    permutation drawn from (``seed``, e) alone, starting after its first ``first_batch``
    batches: a run resumed after k training steps sees exactly the batches the uninterrupted run
    would have (with or without buckets). Only event indices pass through the
    pipeline; each batch is gathered from the arrays in memory, so no second copy is held.
    """
    events = shard(len(inputs), rank, size)
    arrays = [np.asarray(array, np.float32)
              for array in (inputs.particles, inputs.jets, inputs.condition, inputs.mask)]

    bucketed = shuffle and bucket_window is not None
    shapes = [array.shape[1:] for array in arrays]
    if bucketed:  # the particle axis varies from batch to batch
        shapes[0], shapes[3] = (2, None, shapes[0][-1]), (2, None)

    def take(rows):  # numpy: the arrays' entries for one batch of shard positions
        batch = [array[events[rows]] for array in arrays]
        if bucketed:  # cut to the bucket's padded width
            width = padded_width(longest_jet(batch[3]).max(), batch[3].shape[-1])
            batch[0], batch[3] = batch[0][:, :, :width], batch[3][:, :, :width]
        return batch

    def gather(rows):
        batch = tf.numpy_function(take, [rows], [tf.float32] * 4)
        for tensor, shape in zip(batch, shapes):
            tensor.set_shape((None, *shape))
        return tuple(batch)

    if bucketed:
        longest = longest_jet(arrays[3][events])

        def epoch_batches(epoch):
            positions = tf.numpy_function(
                lambda e: bucketed_order(longest, batch_size, bucket_window, seed, int(e)), [epoch], tf.int64)
            positions.set_shape([len(events)])
            return tf.data.Dataset.from_tensor_slices(positions).batch(batch_size)

        order = tf.data.Dataset.counter().flat_map(epoch_batches).skip(first_batch)
    elif shuffle:
        order = tf.data.Dataset.counter().flat_map(
            lambda epoch: _epoch_batches(len(events), batch_size, seed, epoch)).skip(first_batch)
    else:
        order = tf.data.Dataset.range(len(events)).batch(batch_size)
    dataset = order.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if pad_to_longest and not bucketed:
        dataset = dataset.map(_trim_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def bucketed_order(longest: np.ndarray, batch_size: int, bucket_window: int, seed: int, epoch: int) -> np.ndarray:
    """(n,) int64 positions of epoch ``epoch`` for events whose longest jets are ``longest`` (n,).

    A permutation drawn from (seed, epoch) is cut into windows of ``bucket_window`` batches;
    each window is sorted by the longest jet (ties in permutation order) and cut into
    ``batch_size`` batches, and all full batches are shuffled within their window. The one short
    batch (n not a multiple of batch_size) comes last, so ``.batch(batch_size)`` of the result
    gives exactly these batches.
    """
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(len(longest))
    window = batch_size * bucket_window
    window_of = np.arange(len(longest)) // window
    order = permutation[np.lexsort((longest[permutation], window_of))]
    n_full = len(order) // batch_size
    batches = order[:n_full * batch_size].reshape(n_full, batch_size)
    batch_window = np.arange(n_full) // bucket_window
    shuffled = np.lexsort((rng.random(n_full), batch_window))
    return np.concatenate([batches[shuffled].ravel(), order[n_full * batch_size:]]).astype(np.int64)


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: tf.Tensor) -> tf.data.Dataset:
    """Positions 0..n-1 in the order of epoch ``epoch``'s permutation, in batches."""
    keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)


def _trim_batch(particles, jets, condition, mask):
    particles, mask = trim_to_longest(particles, mask)
    return particles, jets, condition, mask

