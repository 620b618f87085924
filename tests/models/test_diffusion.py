"""The diffusion networks: symmetries, masking, the objective and the paper-size weight counts."""
from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion import config as config_module
from lhco_diffusion.data import mjj_weights
from lhco_diffusion.models import diffusion, generator, layers, networks
from lhco_diffusion.models.build import build_generator
from lhco_diffusion.solvers import schedule
from conftest import CONFIGS


@pytest.fixture(scope="module")
def tiny(test_config):
    tf.keras.utils.set_random_seed(3)
    return diffusion.DiffusionModel(test_config.jet_model, test_config.particle_model, test_config.training)


def _events(n: int, npart: int, seed: int):
    """Random model-space events: particles (n, 2, P, 3), jets (n, 2, 5), condition (n, 1), mask (n, 2, P)."""
    rng = np.random.default_rng(seed)
    multiplicity = rng.integers(1, npart + 1, (n, 2))
    mask = (np.arange(npart) < multiplicity[..., None]).astype(np.float32)
    particles = rng.normal(size=(n, 2, npart, 3)).astype(np.float32) * mask[..., None]
    jets = rng.normal(size=(n, 2, 5)).astype(np.float32)
    condition = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return particles, jets, condition, mask


def test_particle_velocity_is_permutation_equivariant(tiny):
    particles, jets, condition, mask = _events(4, 10, seed=0)
    mask[:] = 1.0
    particles = np.random.default_rng(1).normal(size=particles.shape).astype(np.float32)
    t = np.full((4, 1), 0.3, np.float32)
    v = tiny.particle_velocity(particles, t, jets, condition, mask).numpy()
    order = np.random.default_rng(2).permutation(10)
    permuted = tiny.particle_velocity(particles[:, :, order], t, jets, condition, mask[:, :, order]).numpy()
    np.testing.assert_allclose(permuted, v[:, :, order], atol=1e-5)


def test_padded_slots_neither_influence_nor_receive_anything(tiny):
    particles, jets, condition, mask = _events(5, 8, seed=3)
    t = np.full((5, 1), 0.6, np.float32)
    v = tiny.particle_velocity(particles, t, jets, condition, mask).numpy()
    garbage = particles + 50.0 * (1.0 - mask[..., None])
    with_garbage = tiny.particle_velocity(garbage, t, jets, condition, mask).numpy()
    np.testing.assert_allclose(with_garbage, v, atol=1e-5)
    assert np.all(v[mask == 0] == 0.0)
    wider = [np.pad(array, [(0, 0), (0, 0), (0, 6)] + [(0, 0)] * (array.ndim - 3)) for array in (particles, mask)]
    padded_more = tiny.particle_velocity(wider[0], t, jets, condition, wider[1]).numpy()
    np.testing.assert_allclose(padded_more[:, :, :8], v, atol=1e-5)


def test_jet_velocity_is_equivariant_to_swapping_the_jets(tiny):
    _, jets, condition, _ = _events(6, 4, seed=4)
    t = np.random.default_rng(5).uniform(size=(6, 1)).astype(np.float32)
    v = tiny.jet_velocity(jets, t, condition).numpy()
    swapped = tiny.jet_velocity(jets[:, ::-1], t, condition).numpy()
    np.testing.assert_allclose(swapped, v[:, ::-1], atol=1e-5)


def test_the_jet_index_tells_the_leading_jet_from_the_other(test_config):
    """With jet_model.jet_index the pair is ordered: swapping the jets no longer just swaps the
    velocities (the network sees which token is the leading jet), and the index adds exactly the
    2 x projection_dim weights of its two input columns."""
    indexed = dataclasses.replace(test_config.jet_model, jet_index=True)
    tf.keras.utils.set_random_seed(3)
    network = networks.build_jet_network(indexed)
    _, jets, condition, _ = _events(6, 4, seed=4)
    t = np.random.default_rng(5).uniform(size=(6, 1)).astype(np.float32)
    v = network((jets, t, condition)).numpy()
    swapped = network((jets[:, ::-1], t, condition)).numpy()
    assert np.abs(swapped - v[:, ::-1]).max() > 1e-3
    plain = networks.build_jet_network(test_config.jet_model).count_params()
    assert network.count_params() - plain == 2 * indexed.projection_dim


def test_the_particle_model_refuses_a_jet_index(tmp_path):
    with pytest.raises(config_module.ConfigError, match="particle_model.jet_index"):
        config_module.load(CONFIGS / "test.yaml", ["particle_model.jet_index=true"])


def test_each_jets_particles_depend_on_their_own_jet_only(tiny):
    particles, jets, condition, mask = _events(3, 6, seed=6)
    t = np.full((3, 1), 0.5, np.float32)
    v = tiny.particle_velocity(particles, t, jets, condition, mask).numpy()
    changed = jets.copy()
    changed[:, 1] += 1.0
    v_changed = tiny.particle_velocity(particles, t, changed, condition, mask).numpy()
    np.testing.assert_allclose(v_changed[:, 0], v[:, 0], atol=1e-6)
    assert np.abs(v_changed[:, 1] - v[:, 1]).max() > 1e-4


def test_ema_follows_the_trained_weights(test_config):
    model = diffusion.DiffusionModel(test_config.jet_model, test_config.particle_model, test_config.training)
    for network, ema in model._network_pairs():
        for weight, average in zip(network.weights, ema.weights):
            np.testing.assert_array_equal(weight.numpy(), average.numpy())
    weight = model.jet_network.trainable_weights[0]
    before = model.ema_jet_network.trainable_weights[0].numpy()
    weight.assign_add(tf.ones_like(weight))
    model._update_ema()
    after = model.ema_jet_network.trainable_weights[0].numpy()
    np.testing.assert_allclose(after, before + (1.0 - test_config.training.ema_decay), atol=1e-6)


@pytest.mark.parametrize("steps, decay", [(0, 0.1), (90, 0.91), (100_000, 0.999)])
def test_the_ema_warm_up_caps_the_decay_early_in_training(test_config, steps, decay):
    """ema_warmup: decay = min(ema_decay, (1 + n) / (10 + n)) at optimizer step n."""
    training = dataclasses.replace(test_config.training, ema_decay=0.999, ema_warmup=True)
    model = diffusion.DiffusionModel(test_config.jet_model, test_config.particle_model, training)
    model.compile(optimizer=tf.keras.optimizers.Adam())
    model.optimizer.iterations.assign(steps)
    weight = model.jet_network.trainable_weights[0]
    before = model.ema_jet_network.trainable_weights[0].numpy()
    weight.assign_add(tf.ones_like(weight))
    model._update_ema()
    after = model.ema_jet_network.trainable_weights[0].numpy()
    np.testing.assert_allclose(after, before + (1.0 - decay), atol=1e-6)


def test_loss_is_the_v_error_averaged_over_real_particles(test_config):
    """With a network that predicts v exactly (here: zero data, so v = alpha eps), the loss is 0,
    and a constant error c on every real value gives c^2 whatever the padding."""
    model = diffusion.DiffusionModel(test_config.jet_model, test_config.particle_model, test_config.training)
    particles, jets, condition, mask = _events(4, 7, seed=7)
    offset = 0.5

    class Constant(tf.keras.layers.Layer):
        def call(self, inputs):
            particles_t, t, _, _, mask = inputs
            alpha, sigma = schedule.alpha_sigma(t)
            eps = particles_t / sigma[:, :, None]  # x = 0, so x_t = sigma eps
            return (alpha[:, :, None] * eps + offset) * mask[..., None]

    model.particle_network = Constant()
    noise = diffusion.NoiseStream(0, 0)
    loss = model.particle_loss(np.zeros_like(particles), jets, condition, mask, noise, training=False)
    np.testing.assert_allclose(float(loss), offset**2, rtol=1e-4)


def test_likelihood_weighting_samples_uniform_logsnr_with_alpha_squared_weights(test_config):
    settings = config_module.from_dict({"training": {"likelihood_weighting": True}}).training
    model = diffusion.DiffusionModel(test_config.jet_model, test_config.particle_model, settings)
    t, weight = model._diffusion_time(20_000, diffusion.NoiseStream(1, 0))
    logsnr = schedule.logsnr(t).numpy()
    assert abs(logsnr.mean()) < 0.5 and abs(logsnr.std() - 40 / np.sqrt(12)) < 0.3
    np.testing.assert_allclose(weight.numpy(), tf.sigmoid(logsnr).numpy(), rtol=1e-5)


@pytest.mark.parametrize("name, jet_weights, particle_weights", [("lhco_279.yaml", 1.3e6, 1.4e6)])
def test_paper_configuration_has_about_table_one_weights(name, jet_weights, particle_weights):
    settings = config_module.load(CONFIGS / name)
    jet = networks.build_jet_network(settings.jet_model).count_params()
    particle = networks.build_particle_network(settings.particle_model).count_params()
    assert abs(jet / jet_weights - 1) < 0.05, jet
    assert abs(particle / particle_weights - 1) < 0.1, particle


def test_the_mjj_embedding_sees_the_condition_itself_beside_its_fourier_features(test_config):
    """As in the paper, the mjj embedding takes [condition, Fourier(condition)]: one more input
    row to its first dense layer than the time embedding, and a linear path in the condition, so a
    network trained only on the sidebands can interpolate into the signal region."""
    embedding = layers.ConditionEmbedding(8, seed=2, with_value=True)
    plain = layers.ConditionEmbedding(8, seed=2)
    values = tf.constant([[-1.0], [0.1], [1.0]])
    assert embedding(values).shape == plain(values).shape == (3, 8)
    assert embedding.count_params() - plain.count_params() == 2 * 8
    network = networks.build_jet_network(test_config.jet_model)
    first_dense = network.mjj_embedding.dense.layers[0]
    assert first_dense.kernel.shape[0] == test_config.jet_model.num_embed + 1


def test_jet_noise_draws_average_the_jet_loss_over_independent_draws(test_config):
    """K draws per event: the jet loss keeps its expectation, its spread over noise seeds falls as
    1/sqrt(K), and the particle loss does not change."""
    batch = _events(8, 5, seed=11)
    spreads, means, particle_losses = [], [], []
    for draws in (1, 16):
        settings = dataclasses.replace(test_config.training, jet_noise_draws=draws)
        tf.keras.utils.set_random_seed(4)
        model = diffusion.DiffusionModel(test_config.jet_model, test_config.particle_model, settings)
        losses = [model.losses(batch, diffusion.NoiseStream(seed, 0), training=False) for seed in range(40)]
        jet = np.array([float(loss["loss_jet"]) for loss in losses])
        spreads.append(jet.std())
        means.append(jet.mean())
        particle_losses.append(float(model.losses(batch, diffusion.NoiseStream(99, 0), training=False)["loss_particle"]))
    assert 0.15 < spreads[1] / spreads[0] < 0.45  # 1/sqrt(16) = 0.25
    assert abs(means[1] / means[0] - 1) < 3 * spreads[0] / np.sqrt(40) / means[0]
    assert particle_losses[0] == pytest.approx(particle_losses[1], rel=1e-6)


def test_each_test_batch_draws_its_own_noise_the_same_in_every_epoch(tiny):
    """The test loss of a batch is reproducible, and a batch that differs in one jet bit draws
    other noise (one shared draw for every batch would estimate the loss from B noise values)."""
    batch = _events(16, 5, seed=12)
    nudged = tuple(np.copy(tensor) for tensor in batch)
    nudged[1][0, 0, 0] = np.nextafter(nudged[1][0, 0, 0], np.float32(np.inf))

    def test_loss(events):
        tiny.reset_metrics()
        return float(tiny.test_step(tuple(tf.constant(tensor) for tensor in events))["loss"])

    first = test_loss(batch)
    assert test_loss(batch) == first
    assert abs(test_loss(nudged) - first) > 0.01 * first
    assert int(generator.evaluation_noise_step(batch)) < 0  # never a training step's noise


@pytest.mark.parametrize("generator_name", ["diffusion", "flow_matching"])
def test_mjj_weights_scale_each_events_terms_of_both_losses(test_config, generator_name):
    """The losses are linear in the events' weights, the unweighted ones at weight 1, and the
    weights act per event: moving all weight from one half of the batch to the other changes them."""
    solver = {"diffusion": "ddim2", "flow_matching": "midpoint"}[generator_name]
    config = config_module.from_dict(test_config.to_dict(), overrides=[
        f"generator={generator_name}", f"sampling.solver={solver}", "training.jet_noise_draws=3"])
    tf.keras.utils.set_random_seed(5)
    model = build_generator(config)
    particles, jets, _, mask = _events(8, 6, seed=8)
    edges = np.linspace(-1.0, 1.0, mjj_weights.BINS + 1, dtype=np.float32)
    condition = ((edges[:8] + edges[1:9]) / 2)[:, None]  # event i in bin i
    batch = (particles, jets, condition, mask)

    def losses(weights):
        model.mjj_weight_table = None if weights is None else mjj_weights.ConditionWeightTable(
            edges, np.asarray(weights, np.float32))
        return {name: float(value) for name, value in model.losses(batch, generator.NoiseStream(4, 2), False).items()}

    first_half = np.r_[np.full(4, 2.0), np.zeros(mjj_weights.BINS - 4)]
    second_half = np.r_[np.zeros(4), np.full(4, 2.0), np.zeros(mjj_weights.BINS - 8)]
    unweighted, ones = losses(None), losses(np.ones(mjj_weights.BINS))
    first, second = losses(first_half), losses(second_half)
    for name in generator.LOSS_NAMES:
        assert ones[name] == pytest.approx(unweighted[name], rel=1e-5)
        assert first[name] + second[name] == pytest.approx(2 * unweighted[name], rel=1e-5)
        assert abs(first[name] - second[name]) > 1e-3 * unweighted[name]
