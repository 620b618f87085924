"""The two velocity networks of the diffusion models (paper Fig. 1, Table I).

    JetNetwork       v(jets_t (B, 2, F), t (B, 1), condition (B, 1))                  -> (B, 2, F)
    ParticleNetwork  v(particles_t (J, P, 3), t (J, 1), jet (J, F), condition (J, 1),
                       mask (J, P))                                                   -> (J, P, 3)

``condition`` is log mjj scaled to [-1, 1] (``data.transforms.condition``); ``jet`` is the
standardised (log pT/mjj, eta, phi, log m/mjj, N) of the particles' own jet, F = 5 (8 with
``transforms.constituent_closure``: + the closure of its particles). The particle
network sees one jet at a time: the two jets of B events go through it as J = 2B jets.
Time and mjj each pass through random Fourier features and two dense layers (mjj, as in the
paper, with its scaled value beside its Fourier features, so the network can interpolate into the
signal region it never sees in training); the jet features
through one dense layer; the embeddings are concatenated and merged by a dense layer into the
condition vector of a ``PointCloudNetwork`` (DeepSets + masked attention). P may change from
call to call. The jet network is equivariant to swapping the two jets, the particle network
to permuting a jet's particles, and padded particles neither influence nor receive anything.

With ``jet_model.jet_index`` the jet network instead appends each jet's index as a one-hot pair
to its token (the data list the leading-pT jet first): the pair is then ordered, and the network
can give the leading jet and its back-to-back partner their own distributions (after the event
rotation of ``data.transforms`` the leading jet's phi is fixed) instead of having to break the
swap symmetry from the noise alone.
"""
from __future__ import annotations

import tensorflow as tf

from lhco_diffusion.config import NetworkConfig
from lhco_diffusion.data.layout import N_JET_FEATURES, N_PARTICLE_FEATURES
from lhco_diffusion.models.layers import ConditionEmbedding, PointCloudNetwork, leaky_relu



class _ConditionedSetNetwork(tf.keras.Model):
    """A ``PointCloudNetwork`` whose condition vector embeds t, mjj and optional extra features."""

    def __init__(self, config: NetworkConfig, num_features: int, extra_features: bool, **kwargs):
        super().__init__(**kwargs)
        width = config.num_embed
        self.time_embedding = ConditionEmbedding(width, seed=1, name="time_embedding")
        self.mjj_embedding = ConditionEmbedding(width, seed=2, with_value=True, name="mjj_embedding")
        self.extra_embedding = (tf.keras.Sequential([tf.keras.layers.Dense(width), leaky_relu()],
                                                    name="jet_embedding") if extra_features else None)
        self.merge = tf.keras.Sequential([tf.keras.layers.Dense(width), leaky_relu()], name="merge")
        self.network = PointCloudNetwork(num_features, config.projection_dim, config.num_layers,
                                         config.num_heads, name="point_cloud")

    def _conditioned(self, tokens, mask, t, condition, extra=None):
        embeddings = [self.time_embedding(t), self.mjj_embedding(condition)]
        if self.extra_embedding is not None:
            embeddings.append(self.extra_embedding(extra))
        velocity = self.network(tokens, mask, self.merge(tf.concat(embeddings, axis=-1)))
        return tf.cast(velocity, tf.float32)  # float32 even when the layers compute in bfloat16


class JetNetwork(_ConditionedSetNetwork):
    """Velocity of the two jet tokens, conditioned on t and mjj."""

    def __init__(self, config: NetworkConfig, n_features: int = N_JET_FEATURES, **kwargs):
        super().__init__(config, n_features, extra_features=False, **kwargs)
        self.jet_index = config.jet_index

    def call(self, inputs):
        """inputs = (jets_t (B, 2, F), t (B, 1), condition (B, 1)) -> v (B, 2, F)."""
        jets_t, t, condition = inputs
        both_real = tf.ones(tf.shape(jets_t)[:2], tf.bool)
        if self.jet_index:
            one_hot = tf.eye(2, dtype=jets_t.dtype)[None]  # (1, 2, 2): row j marks jet j
            jets_t = tf.concat([jets_t, tf.tile(one_hot, (tf.shape(jets_t)[0], 1, 1))], axis=-1)
        return self._conditioned(jets_t, both_real, t, condition)


class ParticleNetwork(_ConditionedSetNetwork):
    """Velocity of one jet's particles, conditioned on t, the jet's features and mjj."""

    def __init__(self, config: NetworkConfig, **kwargs):
        super().__init__(config, N_PARTICLE_FEATURES, extra_features=True, **kwargs)

    def call(self, inputs):
        """inputs = (particles_t (J, P, 3), t (J, 1), jet (J, F), condition (J, 1), mask (J, P))
        -> v (J, P, 3), zero in padded slots."""
        particles_t, t, jet, condition, mask = inputs
        return self._conditioned(particles_t, mask, t, condition, jet)


def with_jet_weights(network: tf.keras.Model, n_jet_features: int = N_JET_FEATURES) -> tf.keras.Model:
    """``network`` (any generator's jet network) with its weights created by one dummy call."""
    network((tf.zeros((1, 2, n_jet_features)), tf.zeros((1, 1)), tf.zeros((1, 1))))
    return network


def with_particle_weights(network: tf.keras.Model, n_jet_features: int = N_JET_FEATURES) -> tf.keras.Model:
    """``network`` (any generator's particle network) with its weights created by one dummy call
    on one slot (P is free)."""
    network((tf.zeros((1, 1, N_PARTICLE_FEATURES)), tf.zeros((1, 1)), tf.zeros((1, n_jet_features)),
             tf.zeros((1, 1)), tf.ones((1, 1))))
    return network


def build_jet_network(config: NetworkConfig, name: str = "jet_network",
                      n_jet_features: int = N_JET_FEATURES) -> JetNetwork:
    """A jet network for ``n_jet_features`` per jet, with its weights created."""
    return with_jet_weights(JetNetwork(config, n_jet_features, name=name), n_jet_features)


def build_particle_network(config: NetworkConfig, name: str = "particle_network",
                           n_jet_features: int = N_JET_FEATURES) -> ParticleNetwork:
    """A particle network conditioned on ``n_jet_features`` per jet, with its weights created (P is free)."""
    return with_particle_weights(ParticleNetwork(config, name=name), n_jet_features)
