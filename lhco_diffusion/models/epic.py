"""The two velocity networks of the flow-matching generator (paper Fig. 2, Table I; EPiC-FM).

    FlowMatchingJetNetwork  v(jets_t (B, 2, F), t (B, 1), condition (B, 1))              -> (B, 2, F)
    EpicParticleNetwork     v(particles_t (J, P, 3), t (J, 1), jet (J, F), condition (J, 1),
                              mask (J, P))                                               -> (J, P, 3)

The calls are those of every generator (``models.generator``). The jet network is fully
connected on the two jets' 10 features; t (random Fourier features) and the scaled log mjj are
concatenated to the input of every layer. The particle network is built from EPiC layers
(Buhmann et al., arXiv:2301.08128), whose cost grows linearly with P (no attention): each
particle carries a local vector of width ``hidden_dim``, each jet one global vector of width
``latent_dim``, and every layer

    global <- act(W_g2 [act(W_g1 [mean(local), sum_scale * sum(local), global, c]), c] + global)
    local  <- act(W_l2 [act(W_l1 [local, global, c]), c] + local)

with c = [Fourier(t), the jet's 5 features, scaled log mjj] and sums and means over real
particles only. Before the layers each particle is projected to ``hidden_dim`` and the first
global vector is pooled from it; after them a dense layer reads out the velocity. Padded
particles' inputs are multiplied by zero, every pooling skips them and their local vectors and
outputs are exactly zero: they neither influence nor receive anything, and the network is
equivariant to permuting a jet's particles.
"""
from __future__ import annotations

import tensorflow as tf

from lhco_diffusion.config import EpicConfig, FlowMatchingJetConfig
from lhco_diffusion.models.layers import FourierFeatures, leaky_relu
from lhco_diffusion.models.networks import with_jet_weights, with_particle_weights
from lhco_diffusion.data.layout import N_JET_FEATURES, N_PARTICLE_FEATURES


class ConcatDense(tf.keras.layers.Layer):
    """A dense layer on the concatenation of its inputs, per-particle (J, P, a) ones and per-jet
    (J, b) ones, without tiling the per-jet inputs over P: W [x_1, ..., x_n] + b as
    sum_i x_i W_i + b. Output (J, P, units) if any input is per-particle, else (J, units).

    With ``weight_norm`` the kernel is g v / |v| (one norm per output unit over all inputs;
    Salimans and Kingma 2016), g starting at 1.
    """

    def __init__(self, units: int, weight_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.weight_norm = units, weight_norm

    def build(self, input_shapes):
        self.widths = [int(shape[-1]) for shape in input_shapes]
        self.kernel = self.add_weight(name="kernel", shape=(sum(self.widths), self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.scale = (self.add_weight(name="scale", shape=(self.units,), initializer="ones")
                      if self.weight_norm else None)
        super().build(input_shapes)

    def call(self, inputs):
        kernel = self.kernel
        if self.weight_norm:
            kernel = self.scale * kernel / tf.norm(kernel, axis=0)
        per_particle = any(x.shape.rank == 3 for x in inputs)
        total = self.bias
        for x, weights in zip(inputs, tf.split(kernel, self.widths, axis=0)):
            term = tf.tensordot(x, weights, axes=1)  # einsum's gradient here is 60x slower on CPU
            total = total + (term[:, None, :] if per_particle and x.shape.rank == 2 else term)
        return total


def masked_pooling(local: tf.Tensor, weight: tf.Tensor, sum_scale: float) -> list[tf.Tensor]:
    """[mean, sum_scale * sum] over the real particles: local (J, P, H), weight (J, P, 1) -> 2 x (J, H)."""
    total = tf.reduce_sum(local * weight, axis=1)
    return [total / tf.maximum(tf.reduce_sum(weight, axis=1), 1.0), sum_scale * total]


class EpicLayer(tf.keras.layers.Layer):
    """One EPiC layer: (local (J, P, H), global (J, L), c (J, C), weight (J, P, 1)) -> (local, global),
    both residual; padded particles' local vectors are zero (see the module docstring)."""

    def __init__(self, hidden_dim: int, latent_dim: int, sum_scale: float, weight_norm: bool, **kwargs):
        super().__init__(**kwargs)
        self.sum_scale = sum_scale
        self.global_hidden = ConcatDense(hidden_dim, weight_norm, name="global_hidden")
        self.global_out = ConcatDense(latent_dim, weight_norm, name="global_out")
        self.local_hidden = ConcatDense(hidden_dim, weight_norm, name="local_hidden")
        self.local_out = ConcatDense(hidden_dim, weight_norm, name="local_out")
        self.activation = leaky_relu()

    def call(self, local, global_, c, weight):
        act = self.activation
        pooled = masked_pooling(local, weight, self.sum_scale)
        hidden = act(self.global_hidden([*pooled, global_, c]))
        global_ = act(self.global_out([hidden, c]) + global_)
        hidden = act(self.local_hidden([local, global_, c]))
        local = act(self.local_out([hidden, c]) + local) * weight
        return local, global_


class EpicParticleNetwork(tf.keras.Model):
    """Velocity of one jet's particles given t, the jet's features and mjj (EPiC-FM)."""

    def __init__(self, config: EpicConfig, **kwargs):
        super().__init__(**kwargs)
        hidden, latent, norm = config.hidden_dim, config.latent_dim, config.weight_norm
        self.sum_scale = config.sum_scale
        self.time_features = FourierFeatures(2 * config.frequencies, seed=1, name="time_features")
        self.projection_hidden = ConcatDense(hidden, norm, name="projection_hidden")
        self.projection_out = ConcatDense(hidden, norm, name="projection_out")
        self.global_hidden = ConcatDense(hidden, norm, name="global_hidden")
        self.global_out = ConcatDense(latent, norm, name="global_out")
        self.epic_layers = [EpicLayer(hidden, latent, config.sum_scale, norm, name=f"epic_{index}")
                            for index in range(config.num_layers)]
        self.readout = ConcatDense(N_PARTICLE_FEATURES, norm, name="readout")
        self.activation = leaky_relu()

    def call(self, inputs):
        """inputs = (particles_t (J, P, 3), t (J, 1), jet (J, F), condition (J, 1), mask (J, P))
        -> v (J, P, 3), zero in padded slots."""
        particles_t, t, jet, condition, mask = inputs
        act = self.activation
        weight = tf.cast(mask, particles_t.dtype)[..., None]
        c = tf.concat([self.time_features(t), jet, condition], axis=-1)
        local = act(self.projection_hidden([particles_t * weight, c]))
        local = act(self.projection_out([local, c]) + local) * weight
        hidden = act(self.global_hidden([*masked_pooling(local, weight, self.sum_scale), c]))
        global_ = act(self.global_out([hidden, c]))
        for layer in self.epic_layers:
            local, global_ = layer(local, global_, c, weight)
        return tf.cast(self.readout([local, c]) * weight, tf.float32)  # float32 under mixed precision too


class FlowMatchingJetNetwork(tf.keras.Model):
    """Velocity of the two jets' 2F features given t and mjj: a residual fully connected network."""

    def __init__(self, config: FlowMatchingJetConfig, n_features: int = N_JET_FEATURES, **kwargs):
        super().__init__(**kwargs)
        self.n_features = n_features
        self.time_features = FourierFeatures(2 * config.frequencies, seed=1, name="time_features")
        self.input_layer = ConcatDense(config.hidden_dim, name="input_layer")
        self.hidden_layers = [ConcatDense(config.hidden_dim, name=f"hidden_{index}")
                              for index in range(config.num_layers)]
        self.readout = ConcatDense(2 * n_features, name="readout")
        self.activation = leaky_relu()

    def call(self, inputs):
        """inputs = (jets_t (B, 2, F), t (B, 1), condition (B, 1)) -> v (B, 2, F)."""
        jets_t, t, condition = inputs
        conditioning = [self.time_features(t), condition]
        hidden = self.activation(self.input_layer([tf.reshape(jets_t, (-1, 2 * self.n_features)), *conditioning]))
        for layer in self.hidden_layers:
            hidden = self.activation(layer([hidden, *conditioning]) + hidden)
        velocity = tf.reshape(self.readout([hidden, *conditioning]), (-1, 2, self.n_features))
        return tf.cast(velocity, tf.float32)  # float32 even when the layers compute in bfloat16


def build_flow_matching_jet_network(config: FlowMatchingJetConfig, name: str = "jet_network",
                                    n_jet_features: int = N_JET_FEATURES) -> FlowMatchingJetNetwork:
    """A flow-matching jet network for ``n_jet_features`` per jet, with its weights created."""
    return with_jet_weights(FlowMatchingJetNetwork(config, n_jet_features, name=name), n_jet_features)


def build_epic_particle_network(config: EpicConfig, name: str = "particle_network",
                                n_jet_features: int = N_JET_FEATURES) -> EpicParticleNetwork:
    """An EPiC particle network conditioned on ``n_jet_features`` per jet, with its weights created
    (P is free)."""
    return with_particle_weights(EpicParticleNetwork(config, name=name), n_jet_features)
