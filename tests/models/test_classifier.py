"""The dijet transformer classifier: symmetries, padding, size, batching and early stopping."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion import config as config_module
from lhco_diffusion.data.transforms import ModelInputs
from lhco_diffusion.models import classifier

NPART = 9


@pytest.fixture(scope="module")
def model(test_config):
    tf.keras.utils.set_random_seed(3)
    return classifier.build(test_config.classifier, NPART)


def dijets(n_events: int, npart: int = NPART, seed: int = 0):
    """Random model-space events: jets (n, 2, 5), particles (n, 2, P, 3) zero-padded, mask (n, 2, P)."""
    rng = np.random.default_rng(seed)
    jets = rng.normal(size=(n_events, 2, 5)).astype(np.float32)
    n_constituents = rng.integers(1, npart + 1, size=(n_events, 2))
    mask = (np.arange(npart) < n_constituents[..., None]).astype(np.float32)
    particles = rng.normal(size=(n_events, 2, npart, 3)).astype(np.float32) * mask[..., None]
    return jets, particles, mask


def probabilities(model, jets, particles, mask) -> np.ndarray:
    return model((jets, particles, mask)).numpy()


def test_output_is_a_probability_per_event(model):
    output = probabilities(model, *dijets(6))
    assert output.shape == (6,)
    assert np.all((output > 0) & (output < 1))


def test_swapping_the_two_jets_changes_nothing(model):
    jets, particles, mask = dijets(8)
    swapped = probabilities(model, jets[:, ::-1], particles[:, ::-1], mask[:, ::-1])
    np.testing.assert_allclose(swapped, probabilities(model, jets, particles, mask), atol=1e-6)


def test_permuting_particles_within_each_jet_changes_nothing(model):
    jets, particles, mask = dijets(8)
    rng = np.random.default_rng(1)
    order = np.stack([[rng.permutation(NPART) for _ in range(2)] for _ in range(8)])
    permuted_particles = np.take_along_axis(particles, order[..., None], axis=2)
    permuted_mask = np.take_along_axis(mask, order, axis=2)
    permuted = probabilities(model, jets, permuted_particles, permuted_mask)
    np.testing.assert_allclose(permuted, probabilities(model, jets, particles, mask), atol=1e-6)


def test_padded_slots_neither_content_nor_number_matter(model):
    jets, particles, mask = dijets(8)
    reference = probabilities(model, jets, particles, mask)
    for filler in (1e4, np.nan):
        garbage = np.where(mask[..., None] > 0, particles, np.float32(filler))
        np.testing.assert_allclose(probabilities(model, jets, garbage, mask), reference, atol=1e-6)
    longer = np.pad(particles, ((0, 0), (0, 0), (0, 7), (0, 0)))
    longer_mask = np.pad(mask, ((0, 0), (0, 0), (0, 7)))
    np.testing.assert_allclose(probabilities(model, jets, longer, longer_mask), reference, atol=1e-6)


def test_real_particles_and_jets_do_matter(model):
    """The invariances above are not those of a constant: changing inputs changes the output."""
    jets, particles, mask = dijets(8)
    reference = probabilities(model, jets, particles, mask)
    moved = particles.copy()
    moved[:, 0, 0] += 3.0
    assert np.all(np.abs(probabilities(model, jets, moved, mask) - reference) > 1e-6)
    assert np.all(np.abs(probabilities(model, jets + 1.0, particles, mask) - reference) > 1e-6)


def test_paper_configuration_has_about_438k_weights():
    """Table I: 438k (that count includes the sideband classifier's 4k-weight mjj embedding)."""
    paper = config_module.load(Path(__file__).resolve().parents[2] / "configs" / "lhco_279.yaml").classifier
    n_weights = classifier.build(paper).count_params()
    assert abs(n_weights - 438_000) / 438_000 < 0.015


def test_batches_keep_labels_with_their_events_and_trim_padding():
    jets, particles, mask = dijets(10, npart=12, seed=2)
    mask[:, :, 8:] = 0
    particles *= mask[..., None]
    jets[:, 0, 0] = np.arange(10)  # event identity
    labels = np.arange(10) % 2
    inputs = ModelInputs(particles, jets, np.zeros((10, 1), np.float32), mask)
    batches = list(classifier.batches(inputs, labels, batch_size=4, shuffle=True, seed=1).take(3))
    seen = np.concatenate([features[0][:, 0, 0].numpy() for features, _ in batches]).astype(int)
    assert sorted(seen) == list(range(10))
    for (batch_jets, batch_particles, batch_mask), batch_labels in batches:
        np.testing.assert_array_equal(batch_labels.numpy(), labels[batch_jets[:, 0, 0].numpy().astype(int)])
        longest = int(batch_mask.numpy().sum(axis=-1).max())
        assert batch_particles.shape[2] == batch_mask.shape[2] == longest


def test_two_workers_get_disjoint_equal_shards():
    jets, particles, mask = dijets(9, seed=4)
    jets[:, 0, 0] = np.arange(9)
    inputs = ModelInputs(particles, jets, np.zeros((9, 1), np.float32), mask)
    shards = [np.concatenate([features[0][:, 0, 0].numpy()
                              for features, _ in classifier.batches(inputs, np.zeros(9), 3, rank, 2)])
              for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 4
    assert not set(shards[0]) & set(shards[1])


def test_early_stopping_keeps_the_best_weights_when_epochs_run_out():
    network = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    stopping = classifier.EarlyStopping(patience=10)
    stopping.set_model(network)
    stopping.on_train_begin()
    for epoch, loss in enumerate([1.0, 0.5, 0.8]):
        network.set_weights([np.full((1, 1), epoch, np.float32), np.zeros(1, np.float32)])
        stopping.on_epoch_end(epoch, {"val_loss": loss})
    stopping.on_train_end()
    assert network.get_weights()[0][0, 0] == 1.0


@pytest.mark.parametrize("min_epochs, stopped_after", [(0, 5), (8, 8)])
def test_early_stopping_waits_for_min_epochs_but_keeps_the_best_weights(min_epochs, stopped_after):
    """A loss stuck on a plateau (ln 2) stops after the patience, or not before min_epochs; either
    way the best epoch's weights are the ones kept."""
    network = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    network.stop_training = False
    stopping = classifier.EarlyStopping(patience=3, min_epochs=min_epochs)
    stopping.set_model(network)
    stopping.on_train_begin()
    epochs = 0
    for epoch, loss in enumerate([0.6931, 0.6930, 0.6932, 0.6931, 0.6933, 0.6931, 0.6932, 0.6931, 0.6932]):
        network.set_weights([np.full((1, 1), epoch, np.float32), np.zeros(1, np.float32)])
        stopping.on_epoch_end(epoch, {"val_loss": loss})
        epochs += 1
        if network.stop_training:
            break
    stopping.on_train_end()
    assert epochs == stopped_after
    assert network.get_weights()[0][0, 0] == 1.0


def test_fit_learns_a_separable_toy_and_predicts_in_order(test_config):
    jets, particles, mask = dijets(400, seed=5)
    labels = np.arange(400) % 2
    jets[:, :, 3] += 2.0 * labels[:, None]  # class 1: heavier jets
    inputs = ModelInputs(particles, jets, np.zeros((400, 1), np.float32), mask)
    settings = dataclasses.replace(test_config.classifier, epochs=8, learning_rate=3e-3)
    tf.keras.utils.set_random_seed(0)
    network = classifier.build(settings, NPART)
    train = classifier.batches(inputs.select(slice(0, 300)), labels[:300], 32, shuffle=True)
    validation = classifier.batches(inputs.select(slice(300, 400)), labels[300:], 32)
    history = classifier.fit(network, train, validation, settings, steps_per_epoch=10, verbose=False)
    assert history.history["val_loss"][-1] < history.history["val_loss"][0]
    logits = classifier.predict_logits(network, inputs.select(slice(300, 400)), batch_size=7)
    assert logits.shape == (100,)
    direct = probabilities(network, jets[300:], particles[300:], mask[300:])
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), direct, atol=1e-5)
    assert direct[labels[300:] == 1].mean() > direct[labels[300:] == 0].mean() + 0.2
