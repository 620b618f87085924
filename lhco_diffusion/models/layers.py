"""Building blocks shared by the diffusion networks and the classifier.

    FourierFeatures     scalar (B, 1) -> (B, num_embed) random Fourier features [sin, cos]
    ConditionEmbedding  Fourier features -> two dense layers (the paper's time/mjj embedding)
    TransformerBlock    pre-norm masked multi-head self-attention + GELU MLP, residual
    PointCloudNetwork   DeepSets + attention over a masked set of tokens, conditioned on a vector

No layer adds positional information, so every set network is equivariant to permuting its
tokens; masked tokens are never attended to, never pooled and come out as exact zeros.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

LEAKY_SLOPE = 0.01  # LeakyReLU(0.01), paper Table I
FOURIER_SCALE = 16.0  # width of the Gaussian the random frequencies are drawn from


def leaky_relu() -> tf.keras.layers.Layer:
    return tf.keras.layers.LeakyReLU(alpha=LEAKY_SLOPE)


class FourierFeatures(tf.keras.layers.Layer):
    """(B, 1) scalars -> (B, num_embed) features [sin(2 pi w x), cos(2 pi w x)].

    The num_embed / 2 frequencies w ~ N(0, FOURIER_SCALE^2) are fixed at construction from
    ``seed`` and stored as a non-trainable weight, so checkpoints carry them.
    """

    def __init__(self, num_embed: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if num_embed % 2:
            raise ValueError(f"num_embed must be even, not {num_embed}")
        frequencies = np.random.default_rng(seed).normal(0.0, FOURIER_SCALE, (1, num_embed // 2))
        self.frequencies = self.add_weight(
            name="frequencies", shape=frequencies.shape, trainable=False,
            initializer=tf.constant_initializer(frequencies.astype(np.float32)))

    def call(self, values: tf.Tensor) -> tf.Tensor:
        angles = 2.0 * math.pi * tf.matmul(values, self.frequencies)
        return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)


class ConditionEmbedding(tf.keras.layers.Layer):
    """A scalar condition (B, 1) -> (B, num_embed): Fourier features, then two dense layers.

    With ``with_value`` the scalar itself is passed on beside its Fourier features, as the paper
    does for mjj: the random frequencies (scale 16) oscillate many times across the signal
    region, which training never sees, so only the value itself lets the network interpolate
    smoothly from the sidebands into it.
    """

    def __init__(self, num_embed: int, seed: int = 0, with_value: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fourier = FourierFeatures(num_embed, seed)
        self.with_value = with_value
        self.dense = tf.keras.Sequential([
            tf.keras.layers.Dense(2 * num_embed), leaky_relu(),
            tf.keras.layers.Dense(num_embed), leaky_relu(),
        ])

    def call(self, values: tf.Tensor) -> tf.Tensor:
        features = self.fourier(values)
        if self.with_value:
            features = tf.concat([values, features], axis=-1)
        return self.dense(features)


class TransformerBlock(tf.keras.layers.Layer):
    """Pre-norm transformer block: masked multi-head self-attention, then a GELU MLP (4d -> d)."""

    def __init__(self, projection_dim: int, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)
        self.attention = tf.keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=projection_dim // num_heads, dropout=dropout)
        self.mlp_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)
        self.mlp = tf.keras.Sequential([
            tf.keras.layers.Dense(4 * projection_dim, activation="gelu"),
            tf.keras.layers.Dense(projection_dim, activation="gelu"),
        ])

    def call(self, tokens: tf.Tensor, attention_mask: tf.Tensor, training=False) -> tf.Tensor:
        """tokens (B, T, d); attention_mask (B, 1, T) bool: which tokens may be attended to."""
        normed = self.attention_norm(tokens)
        tokens = tokens + self.attention(normed, normed, attention_mask=attention_mask, training=training)
        return tokens + self.mlp(self.mlp_norm(tokens))


class PointCloudNetwork(tf.keras.layers.Layer):
    """DeepSets with attention: tokens (B, T, F), mask (B, T), condition (B, C) -> (B, T, F).

    Each real token is embedded together with the condition (dense + LeakyReLU, dense), passes
    ``num_layers`` transformer blocks attending only to real tokens, and is read out together
    with the masked mean over the set (the DeepSets summary) and the condition. Padded tokens'
    inputs are ignored and their outputs are exactly zero.
    """

    def __init__(self, num_features: int, projection_dim: int, num_layers: int, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf.keras.Sequential([
            tf.keras.layers.Dense(projection_dim), leaky_relu(), tf.keras.layers.Dense(projection_dim),
        ])
        self.blocks = [TransformerBlock(projection_dim, num_heads) for _ in range(num_layers)]
        self.output_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)
        self.readout = tf.keras.Sequential([
            tf.keras.layers.Dense(projection_dim), leaky_relu(), tf.keras.layers.Dense(num_features),
        ])

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        real = tf.cast(mask, tf.bool)
        weight = tf.cast(real, tokens.dtype)[..., None]  # (B, T, 1)
        n_tokens = tf.shape(tokens)[1]
        tiled = tf.tile(condition[:, None, :], (1, n_tokens, 1))
        encoded = self.embedding(tf.concat([tokens * weight, tiled], axis=-1))
        for block in self.blocks:
            encoded = block(encoded, real[:, None, :]) * weight
        encoded = self.output_norm(encoded)
        pooled = tf.reduce_sum(encoded * weight, axis=1) / tf.maximum(tf.reduce_sum(weight, axis=1), 1.0)
        summary = tf.tile(pooled[:, None, :], (1, n_tokens, 1))
        return self.readout(tf.concat([encoded, summary, tiled], axis=-1)) * weight
