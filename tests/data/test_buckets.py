"""Multiplicity buckets: training batches of similar jets, and bucketed generation.

Bucketing only regroups events: every event is seen once per epoch, the batch sizes and the
resume point are those of the unbucketed stream, and a generated event does not depend on
the bucket it was made in.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion.data import dataset
from conftest import ROOT
from test_dataset import _event_ids, _inputs


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


# ---------------------------------------------------------------- the loss does not see the grouping


def _model(test_config, precision: str = "float32"):
    from lhco_diffusion.models.diffusion import DiffusionModel
    from lhco_diffusion.models.generator import precision_policy

    tf.keras.utils.set_random_seed(3)
    with precision_policy(precision):
        return DiffusionModel(test_config.jet_model, test_config.particle_model, test_config.training)


def test_a_jets_velocity_does_not_depend_on_the_padding_of_its_batch(test_config):
    """So each event's loss term is the same in a bucket cut to its width as padded to P."""
    model = _model(test_config)
    inputs = _lhco_like(6, npart=40, seed=5)
    args = [tf.constant(a) for a in (inputs.particles, np.full((6, 1), 0.3, np.float32), inputs.jets,
                                     inputs.condition / 6, inputs.mask)]
    full = model.particle_velocity(*args).numpy()
    width = dataset.padded_width(dataset.longest_jet(inputs.mask).max(), 40)
    cut = model.particle_velocity(args[0][:, :, :width], *args[1:4], args[4][:, :, :width]).numpy()
    real = inputs.mask[:, :, :width] > 0
    np.testing.assert_allclose(cut[real], full[:, :, :width][real], atol=1e-5)


def test_weighting_by_real_particles_makes_the_bucketed_epoch_loss_the_per_particle_mean(test_config):
    model = _model(test_config)
    inputs = _lhco_like(256, npart=40, seed=6)
    model.real_particles_per_event = float(inputs.mask.sum(axis=(1, 2)).mean())
    # a per-particle "loss" larger in short jets (as 1/N is): plain batch means over-count them
    error = inputs.mask / dataset.longest_jet(inputs.mask)[:, None, None]
    exact = error.sum() / inputs.mask.sum()
    weighted, plain = [], []
    for _, _, condition, mask in dataset.diffusion_dataset(inputs, 16, seed=7, bucket_window=8).take(16):
        rows = condition.numpy()[:, 0].astype(int)
        batch_mean = tf.constant(error[rows].sum() / inputs.mask[rows].sum(), tf.float32)
        losses = {"loss_jet": tf.constant(0.0), "loss_particle": batch_mean, "loss": batch_mean}
        weighted.append(float(model._per_particle_weighted(losses, mask)["loss"]))
        plain.append(float(batch_mean))
    assert abs(np.mean(weighted) / exact - 1) < 1e-5
    assert abs(np.mean(plain) / exact - 1) > 0.05  # short-jet batches would count too much


# ---------------------------------------------------------------- generation


def _stats():
    from lhco_diffusion.data.transforms import Stats

    return Stats(jet_mean=[-0.7, 0.0, 0.0, -2.5, 8.0], jet_std=[0.1, 1.0, 1.8, 0.6, 5.0],
                 particle_mean=[-0.05, 0.0, 0.0], particle_std=[0.1, 0.2, 0.2],
                 log_mjj_min=float(np.log(2300.0)), log_mjj_max=float(np.log(5000.0)), pt_rel_epsilon=1e-6)


def test_the_multiplicity_mask_reads_each_jets_n_with_its_own_statistics():
    """With per-jet statistics (transforms.jet_statistics=per_jet) a model-space N of z means
    mean + z * std of its own jet."""
    from lhco_diffusion.workflow import generation

    pooled = _stats()
    per_jet = dataclasses.replace(pooled, jet_mean=np.stack([pooled.jet_mean, pooled.jet_mean + [0, 0, 0, 0, 10]]),
                                  jet_std=np.stack([pooled.jet_std, pooled.jet_std]))
    jets = np.zeros((3, 2, 5))
    jets[..., 4] = [[0.0, 0.0], [0.2, 0.2], [-1.0, 1.0]]
    n = generation.multiplicity_mask(per_jet, jets, 30).sum(axis=-1)
    np.testing.assert_array_equal(n, [[8, 18], [9, 19], [3, 23]])


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_bucketed_generation_equals_unbucketed_event_by_event(test_config, jit_compile):
    from lhco_diffusion.workflow import generation

    model, stats = _model(test_config), _stats()
    mjj = np.linspace(3300.0, 3700.0, 23)
    whole, bucketed = (generation.generate_events(model, stats, mjj, 30, "dpm2m", 6, seed=8, bucket_size=size,
                                                  jit_compile=jit_compile) for size in (None, 5))
    n = whole.jets[..., 4]
    assert len(np.unique(n)) > 4 and n.max() < 30  # buckets of different widths, all narrower than P
    np.testing.assert_array_equal(bucketed.mask, whole.mask)
    np.testing.assert_allclose(bucketed.jets, whole.jets, rtol=1e-6)
    np.testing.assert_allclose(bucketed.particles, whole.particles, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_bucketed_partial_diffusion_equals_unbucketed_event_by_event(test_config):
    from lhco_diffusion.workflow import generation

    model, stats = _model(test_config), _stats()
    source = generation.generate_events(model, stats, np.full(17, 3500.0), 30, "dpm2m", 6, seed=9)
    whole, bucketed = (generation.partially_diffuse_events(model, stats, source, source.mjj * 0.98, 0.4, 30,
                                                           "dpm2m", 8, seed=10, bucket_size=size)
                       for size in (None, 4))
    np.testing.assert_allclose(bucketed.jets, whole.jets, rtol=1e-6)
    np.testing.assert_allclose(bucketed.particles, whole.particles, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- mixed precision


def _losses_over_training(test_config, precision: str, steps: int = 60) -> np.ndarray:
    model = _model(test_config, precision)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
    inputs = _lhco_like(64 * steps, npart=16, seed=11)
    structured = inputs.particles * 0.1 + 0.5 * inputs.mask[..., None]  # narrow clusters: learnable
    inputs = type(inputs)(structured, inputs.jets * 0.1 + 1.0, inputs.condition / len(inputs.condition), inputs.mask)
    history = model.fit(dataset.diffusion_dataset(inputs, 64, seed=1, bucket_window=4), epochs=3,
                        steps_per_epoch=steps // 3, verbose=0)
    return model, np.array(history.history["loss"])


@pytest.mark.slow
def test_bfloat16_training_lowers_the_loss_like_float32(test_config):
    model, float32 = _losses_over_training(test_config, "float32")
    mixed_model, bfloat16 = _losses_over_training(test_config, "bfloat16")
    layer = mixed_model.particle_network.layers[-1]
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    assert all(w.dtype == tf.float32 for w in mixed_model.ema_particle_network.weights)
    print(f"\nloss per epoch: float32 {np.round(float32, 3)}, bfloat16 {np.round(bfloat16, 3)}")
    assert float32[-1] < 0.8 * float32[0] and bfloat16[-1] < 0.8 * bfloat16[0]
    assert abs(bfloat16[-1] / float32[-1] - 1) < 0.1


# ---------------------------------------------------------------- Horovod


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("horovodrun", path=os.path.dirname(sys.executable)) is None,
                    reason="horovodrun is not installed next to this Python (make install builds it)")
def test_horovod_ranks_take_equal_bucketed_step_counts(test_config, processed_file, tmp_path):
    """Two ranks with multiplicity buckets and one pass over each shard per epoch (no fixed
    steps_per_epoch): both take the same number of optimizer steps and end with equal weights."""
    probe = tmp_path / "probe"
    probe.mkdir()
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    command = [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable,
               str(ROOT / "tests" / "horovod_probe.py"), str(probe),
               "--config", str(ROOT / "configs" / "test.yaml"),
               "--set", f"paths.run_dir={tmp_path / 'run'}", "--set", f"paths.cache_dir={test_config.paths.cache_dir}",
               "--set", "training.epochs=1", "--set", "data.bucketing=true", "--set", "data.bucket_window=2"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    expected = dataset.steps_per_epoch(ranks[0]["n_train"], test_config.training.batch_size, size=2)
    assert ranks[0]["steps"] == ranks[1]["steps"] == expected > 1
    np.testing.assert_array_equal(np.load(probe / "weights0.npy"), np.load(probe / "weights1.npy"))
