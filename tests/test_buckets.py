"""Multiplicity buckets: training batches of similar jets, and bucketed generation.

Bucketing only regroups events: every event is seen once per epoch, the batch sizes and the
resume point are those of the unbucketed stream, and a generated event does not depend on
the bucket it was made in.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion.data import dataset
from test_data_dataset import _event_ids, _inputs


def _lhco_like(n: int, npart: int = 40, seed: int = 0):
    """Events with gamma-distributed multiplicities (mean ~12 of 40 slots), condition = index."""
    multiplicity = np.clip(np.rint(np.random.default_rng(seed).gamma(4.0, 3.0, (n, 2))), 1, npart)
    return _inputs(n, npart=npart, seed=seed, multiplicity=multiplicity.astype(int))


def test_padded_widths_are_multiples_of_the_pad_multiple_within_p():
    assert [dataset.padded_width(n, 40, 16) for n in (0, 1, 16, 17, 33, 40)] == [1, 16, 16, 32, 40, 40]


def test_buckets_hold_every_event_once_ordered_by_the_longest_jet():
    inputs = _lhco_like(203)
    buckets = dataset.multiplicity_buckets(inputs.mask, bucket_size=50)
    rows = np.concatenate([rows for rows, _ in buckets])
    np.testing.assert_array_equal(np.sort(rows), np.arange(203))
    assert [len(rows) for rows, _ in buckets] == [50, 50, 50, 50, 3]
    longest = dataset.longest_jet(inputs.mask)
    assert np.all(np.diff(longest[rows]) >= 0)
    for rows, width in buckets:
        assert longest[rows].max() <= width == dataset.padded_width(longest[rows].max(), 40)


def test_a_bucketed_epoch_sees_every_event_once_in_batches_of_the_usual_sizes():
    inputs = _lhco_like(203)
    steps = dataset.steps_per_epoch(203, 16)
    bucketed = list(dataset.diffusion_dataset(inputs, 16, seed=4, bucket_window=4).take(2 * steps))
    for epoch in (bucketed[:steps], bucketed[steps:]):
        ids = np.concatenate([condition.numpy()[:, 0] for _, _, condition, _ in epoch]).astype(int)
        np.testing.assert_array_equal(np.sort(ids), np.arange(203))
        assert [len(batch[2]) for batch in epoch] == [16] * 12 + [11]  # as without buckets
    first = np.concatenate([c.numpy()[:, 0] for _, _, c, _ in bucketed[:steps]])
    second = np.concatenate([c.numpy()[:, 0] for _, _, c, _ in bucketed[steps:]])
    assert not np.array_equal(first, second)  # a new order every epoch


def test_bucketed_batches_carry_their_events_padded_to_a_multiple_of_16():
    inputs = _lhco_like(160)
    longest = dataset.longest_jet(inputs.mask)
    widths, spreads = [], []
    for particles, jets, condition, mask in dataset.diffusion_dataset(inputs, 16, seed=1, bucket_window=10).take(10):
        index = condition.numpy()[:, 0].astype(int)
        width = particles.shape[2]
        assert width == mask.shape[2] == dataset.padded_width(longest[index].max(), 40)
        np.testing.assert_array_equal(particles.numpy(), inputs.particles[index, :, :width])
        np.testing.assert_array_equal(mask.numpy(), inputs.mask[index, :, :width])
        np.testing.assert_array_equal(jets.numpy(), inputs.jets[index])
        assert np.all(inputs.mask[index, :, width:] == 0)  # nothing real was cut
        widths.append(width)
        spreads.append(np.ptp(longest[index]))
    random_spread = np.mean([np.ptp(longest[rows]) for rows in np.arange(160).reshape(10, 16)])
    assert np.mean(spreads) < random_spread / 3  # batches group similar jets
    assert np.mean(widths) < dataset.padded_width(longest.max(), 40)


@pytest.mark.parametrize("first_batch", [26, 9])  # an epoch boundary (13 batches per epoch), and not
def test_a_bucketed_stream_resumed_after_k_batches_continues_the_uninterrupted_one(first_batch):
    inputs = _lhco_like(203)
    options = dict(seed=2, bucket_window=4)
    uninterrupted = _event_ids(dataset.diffusion_dataset(inputs, 16, **options), first_batch + 13)
    resumed = _event_ids(dataset.diffusion_dataset(inputs, 16, first_batch=first_batch, **options), 13)
    np.testing.assert_array_equal(resumed, uninterrupted[-len(resumed):])


def test_every_rank_takes_the_same_number_of_bucketed_steps():
    inputs = _lhco_like(203)
    steps = dataset.steps_per_epoch(203, 16, size=3)
    for rank in range(3):
        epoch = list(dataset.diffusion_dataset(inputs, 16, rank=rank, size=3, seed=1, bucket_window=2).take(steps))
        ids = np.concatenate([c.numpy()[:, 0] for _, _, c, _ in epoch]).astype(int)
        np.testing.assert_array_equal(np.sort(ids), dataset.shard(203, rank, 3))
