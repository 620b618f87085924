"""The dijet point-cloud transformer classifier (DESIGN.md, Classifier; paper Sec. III.C, Fig. 3).

    particles (B, 2, P, 3) --reshape--> (2B, P, 3) --particle encoder (shared by both jets,
                                        attention only among a jet's real particles)--> (B, 2P, d)
    jets      (B, 2, 5)    --jet encoder (attention between the two jet tokens)-------> (B, 2, d)
    concatenate the 2P + 2 tokens -> dense(2d) + dropout + LeakyReLU
      -> average over the real tokens (N1 + N2 + 2) -> dense(d) + dropout + LeakyReLU -> dense(1, sigmoid)

No token carries a position, the particle encoder is the same for both jets and pooling is a
mean, so the output does not change when the two jets are swapped or a jet's particles are
permuted; padded slots are zeroed on input, never attended to and never pooled, so neither
their content nor their number matters. P may differ from batch to batch.

With ``projection_dim`` 64, 4 layers and 2 heads (the paper's configuration) the network has
434k weights; the paper's 438k also counts a dense mjj embedding that its sideband classifier
(the only one conditioned on mjj) adds.

Inputs are the standardised model-space features of ``lhco_diffusion.data.transforms``; the
classifier itself makes no assumption about units.
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np
import tensorflow as tf

from lhco_diffusion.config import ClassifierConfig
from lhco_diffusion.data.dataset import diffusion_dataset
from lhco_diffusion.data.transforms import ModelInputs
from lhco_diffusion.models.callbacks import EarlyStopping
from lhco_diffusion.models.objective import ObjectiveModel
from lhco_diffusion.models.layers import TransformerBlock, leaky_relu

class TokenEncoder(tf.keras.layers.Layer):
    """A set of tokens (B, T, F) with a mask (B, T) -> per-token embeddings (B, T, d).

    Each token is embedded on its own (dense + LeakyReLU, twice, then dense), then transformer
    blocks let every token attend to the real tokens of its own set only.
    """

    def __init__(self, projection_dim: int, num_layers: int, num_heads: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf.keras.Sequential([
            tf.keras.layers.Dense(projection_dim), leaky_relu(),
            tf.keras.layers.Dense(projection_dim), leaky_relu(),
            tf.keras.layers.Dense(projection_dim),
        ])
        self.blocks = [TransformerBlock(projection_dim, num_heads, dropout) for _ in range(num_layers)]
        self.output_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, training=False) -> tf.Tensor:
        """tokens (B, T, F) float32, mask (B, T) bool -> (B, T, d); padded tokens' inputs are ignored."""
        tokens = tf.where(mask[..., None], tokens, tf.zeros_like(tokens))
        encoded = self.embedding(tokens)
        attention_mask = mask[:, None, :]
        for block in self.blocks:
            encoded = block(encoded, attention_mask, training=training)
        return self.output_norm(encoded)


class Classifier(ObjectiveModel):
    """Probability that a dijet event belongs to class 1 (data, signal, reference, ...).

    ``model((jets, particles, mask))`` -> (B,) probabilities; ``model.logits(...)`` -> (B,) logits.
    jets (B, 2, 5), particles (B, 2, P, 3), mask (B, 2, P) (nonzero = real particle).
    ``wrap_tape`` turns the training step's gradient tape into a distributed one (Horovod);
    the loss is the binary cross entropy.
    """

    def __init__(self, config: ClassifierConfig,
                 wrap_tape: Callable[[tf.GradientTape], tf.GradientTape] = lambda tape: tape, **kwargs):
        super().__init__(wrap_tape, **kwargs)
        width, dropout = config.projection_dim, config.dropout
        encoder = dict(projection_dim=width, num_layers=config.num_layers, num_heads=config.num_heads,
                       dropout=dropout)
        self.particle_encoder = TokenEncoder(**encoder, name="particle_encoder")
        self.jet_encoder = TokenEncoder(**encoder, name="jet_encoder")
        self.token_head = tf.keras.Sequential(
            [tf.keras.layers.Dense(2 * width), tf.keras.layers.Dropout(dropout), leaky_relu()])
        self.event_head = tf.keras.Sequential([
            tf.keras.layers.Dense(width), tf.keras.layers.Dropout(dropout), leaky_relu(),
            tf.keras.layers.Dense(1),
        ])
        self.cross_entropy = tf.keras.losses.BinaryCrossentropy(from_logits=True)

    def logits(self, jets: tf.Tensor, particles: tf.Tensor, mask: tf.Tensor, training=False) -> tf.Tensor:
        """(B,) logits of class 1 for jets (B, 2, 5), particles (B, 2, P, 3), mask (B, 2, P)."""
        batch, npart = tf.shape(particles)[0], tf.shape(particles)[2]
        particle_mask = tf.reshape(tf.cast(mask, tf.float32) > 0.5, (2 * batch, npart))
        particle_tokens = self.particle_encoder(
            tf.reshape(particles, (2 * batch, npart, particles.shape[-1])), particle_mask, training=training)
        jet_mask = tf.ones((batch, 2), tf.bool)
        jet_tokens = self.jet_encoder(jets, jet_mask, training=training)
        tokens = tf.concat([tf.reshape(particle_tokens, (batch, 2 * npart, -1)), jet_tokens], axis=1)
        token_mask = tf.concat([tf.reshape(particle_mask, (batch, 2 * npart)), jet_mask], axis=1)
        hidden = self.token_head(tokens, training=training)
        n_tokens = tf.reduce_sum(tf.cast(token_mask, hidden.dtype), axis=1, keepdims=True)
        pooled = tf.reduce_sum(tf.where(token_mask[..., None], hidden, 0.0), axis=1) / n_tokens
        return tf.squeeze(self.event_head(pooled, training=training), axis=-1)

    def call(self, inputs, training=False) -> tf.Tensor:
        """inputs = (jets, particles, mask) -> (B,) probabilities of class 1."""
        return tf.sigmoid(self.logits(*inputs, training=training))

    def objective(self, batch, training: bool) -> tf.Tensor:
        """Binary cross entropy of ``batch = ((jets, particles, mask), label)``."""
        inputs, label = batch
        return self.cross_entropy(label, self.logits(*inputs, training=training))


def build(config: ClassifierConfig, npart: int = 1,
          wrap_tape: Callable[[tf.GradientTape], tf.GradientTape] = lambda tape: tape) -> Classifier:
    """A classifier with its weights created (built on a dummy batch with ``npart`` slots)."""
    model = Classifier(config, wrap_tape)
    model((tf.zeros((1, 2, 5)), tf.zeros((1, 2, npart, 3)), tf.ones((1, 2, npart))))
    return model


def batches(inputs: ModelInputs, labels: np.ndarray, batch_size: int, rank: int = 0, size: int = 1,
            shuffle: bool = False, seed: int = 0, pad_to_longest: bool = True) -> tf.data.Dataset:
    """``((jets, particles, mask), label)`` batches of the shard of ``rank`` out of ``size``:
    one pass in order, or with ``shuffle`` an endless stream of reshuffled epochs.

    labels (N,) 0/1. The pipeline is the diffusion models' (``dataset.diffusion_dataset``:
    equal shards per rank, per-epoch shuffling, batches cut to their longest jet), with the
    label riding in the slot of the mjj condition, which the classifier does not use.
    """
    labelled = ModelInputs(inputs.particles, inputs.jets, np.asarray(labels, np.float32).reshape(-1, 1),
                           inputs.mask)
    dataset = diffusion_dataset(labelled, batch_size, rank, size, shuffle, seed, pad_to_longest)
    return dataset.map(lambda particles, jets, label, mask: ((jets, particles, mask), label[:, 0]))


def fit(model: Classifier, train: tf.data.Dataset, validation: tf.data.Dataset, config: ClassifierConfig,
        steps_per_epoch: int, callbacks: list[tf.keras.callbacks.Callback] = (),
        verbose: bool = True) -> tf.keras.callbacks.History:
    """Adam at ``config.learning_rate`` (not scaled with the number of workers) for up to
    ``config.epochs`` epochs, stopping after ``config.early_stopping_patience`` epochs without a
    lower validation loss (never before ``config.min_epochs``) and keeping the best weights.
    ``train`` is a shuffled (endless) stream of which each epoch takes ``steps_per_epoch``
    batches (``dataset.steps_per_epoch``).
    ``callbacks`` (Horovod broadcast and metric averaging) run before the early stopping, so
    every worker stops at the same epoch."""
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    progress = (1 if sys.stdout.isatty() else 2) if verbose else 0  # a line per epoch in log files
    stopping = EarlyStopping(config.early_stopping_patience, config.min_epochs)
    return model.fit(train, validation_data=validation, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                     verbose=progress, callbacks=[*callbacks, stopping])


def predict_logits(model: Classifier, inputs: ModelInputs, batch_size: int) -> np.ndarray:
    """(N,) float32 class-1 logits of ``inputs``, in order.

    Logits rank events exactly like the sigmoid output but do not saturate at 1 in float32, so
    the tightest cuts of a ROC curve stay resolved.
    """
    if len(inputs) == 0:
        return np.zeros(0, np.float32)
    step = tf.function(model.logits, reduce_retracing=True)
    dataset = batches(inputs, np.zeros(len(inputs)), batch_size)
    return np.concatenate([step(*features).numpy() for features, _ in dataset]).astype(np.float32)
