"""The tf.data pipeline: rank sharding, shuffling, and padding each batch to its longest jet."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion.data import dataset
from lhco_diffusion.data.transforms import ModelInputs
from lhco_diffusion.errors import InputError


def _inputs(n: int, npart: int = 12, seed: int = 0, multiplicity=None) -> ModelInputs:
    """n events whose condition is their index; jets have random (or the given) multiplicities."""
    rng = np.random.default_rng(seed)
    if multiplicity is None:
        multiplicity = rng.integers(1, npart + 1, (n, 2))
    mask = (np.arange(npart) < multiplicity[..., None]).astype(np.float32)
    particles = rng.normal(size=(n, 2, npart, 3)).astype(np.float32) * mask[..., None]
    jets = rng.normal(size=(n, 2, 5)).astype(np.float32)
    return ModelInputs(particles, jets, np.arange(n, dtype=np.float32)[:, None], mask)


def _event_ids(data: tf.data.Dataset, steps: int | None = None) -> np.ndarray:
    """Event indices of the first ``steps`` batches (all of a finite dataset by default)."""
    if steps is not None:
        data = data.take(steps)
    return np.concatenate([condition.numpy()[:, 0] for _, _, condition, _ in data]).astype(int)


@pytest.mark.parametrize("n, size", [(100, 1), (101, 2), (103, 4)])
def test_shards_are_disjoint_and_equal(n, size):
    shards = [dataset.shard(n, rank, size) for rank in range(size)]
    assert len({len(part) for part in shards}) == 1
    joined = np.concatenate(shards)
    assert len(np.unique(joined)) == len(joined) == size * (n // size)
    assert joined.max() < n


def test_shard_rejects_bad_ranks():
    with pytest.raises(InputError, match="rank 2 is outside 0..1"):
        dataset.shard(10, 2, 2)
    with pytest.raises(InputError, match="cannot be shared"):
        dataset.shard(3, 0, 4)


def test_each_rank_sees_its_own_part_once_per_epoch():
    inputs = _inputs(203)
    steps = dataset.steps_per_epoch(203, 16, size=3)
    parts = [_event_ids(dataset.diffusion_dataset(inputs, 16, rank=rank, size=3, seed=1), steps)
             for rank in range(3)]
    for rank, part in enumerate(parts):
        np.testing.assert_array_equal(np.sort(part), dataset.shard(203, rank, 3))
    assert not set(parts[0]) & set(parts[1]) and not set(parts[1]) & set(parts[2])


def test_batches_carry_the_right_events():
    inputs = _inputs(40)
    batches = dataset.diffusion_dataset(inputs, 8, pad_to_longest=False, seed=3).take(5)
    for particles, jets, condition, mask in batches:
        index = condition.numpy()[:, 0].astype(int)
        np.testing.assert_array_equal(particles.numpy(), inputs.particles[index])
        np.testing.assert_array_equal(jets.numpy(), inputs.jets[index])
        np.testing.assert_array_equal(mask.numpy(), inputs.mask[index])


def test_shuffling_is_seeded_and_changes_every_epoch():
    inputs = _inputs(64)
    steps = dataset.steps_per_epoch(64, 8)
    stream = _event_ids(dataset.diffusion_dataset(inputs, 8, seed=5), 2 * steps)
    epoch_1, epoch_2 = stream[:64], stream[64:]
    np.testing.assert_array_equal(np.sort(epoch_1), np.arange(64))
    np.testing.assert_array_equal(np.sort(epoch_2), np.arange(64))
    np.testing.assert_array_equal(epoch_1, _event_ids(dataset.diffusion_dataset(inputs, 8, seed=5), steps))
    assert not np.array_equal(epoch_1, epoch_2)
    assert not np.array_equal(epoch_1, np.arange(64))
    in_order = dataset.diffusion_dataset(inputs, 8, shuffle=False)
    np.testing.assert_array_equal(_event_ids(in_order), np.arange(64))


@pytest.mark.parametrize("first_batch", [14, 5])  # an epoch boundary (7 batches per epoch), and not
def test_a_stream_resumed_after_k_batches_continues_the_uninterrupted_one(first_batch):
    inputs = _inputs(50)
    uninterrupted = _event_ids(dataset.diffusion_dataset(inputs, 8, seed=2), first_batch + 7)
    resumed = _event_ids(dataset.diffusion_dataset(inputs, 8, seed=2, first_batch=first_batch), 7)
    np.testing.assert_array_equal(resumed, uninterrupted[-len(resumed):])


def test_pad_to_longest_trims_each_batch_to_its_longest_jet():
    batch = np.arange(60) // 4
    multiplicity = np.stack([1 + batch, 1 + (batch * 7) % 20], axis=1)  # at most 20 of 30 slots
    inputs = _inputs(60, npart=30, multiplicity=multiplicity)
    widths = []
    for particles, _, condition, mask in dataset.diffusion_dataset(inputs, 4, shuffle=False):
        index = condition.numpy()[:, 0].astype(int)
        longest = int(inputs.mask[index].sum(axis=-1).max())
        assert particles.shape[2] == mask.shape[2] == longest
        np.testing.assert_array_equal(mask.numpy(), inputs.mask[index, :, :longest])
        np.testing.assert_array_equal(particles.numpy(), inputs.particles[index, :, :longest])
        widths.append(longest)
    np.testing.assert_array_equal(widths, multiplicity[::4].max(axis=1))
    full = next(iter(dataset.diffusion_dataset(inputs, 4, shuffle=False, pad_to_longest=False)))
    assert full[0].shape == (4, 2, 30, 3)


def test_trim_to_longest_keeps_at_least_one_slot():
    particles, mask = dataset.trim_to_longest(tf.zeros((2, 2, 5, 3)), tf.zeros((2, 2, 5)))
    assert particles.shape == (2, 2, 1, 3) and mask.shape == (2, 2, 1)


def test_shuffled_batches_are_an_endless_stream_of_short_last_batches():
    sizes = [len(c) for _, _, c, _ in dataset.diffusion_dataset(_inputs(10), 4).take(7)]
    assert sizes == [4, 4, 2, 4, 4, 2, 4]
    assert dataset.steps_per_epoch(10, 4) == 3 and dataset.steps_per_epoch(10, 4, size=3) == 1
