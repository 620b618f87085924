"""The flow-matching generator (paper Sec. II B; EPiC-FM) as one ``keras.Model``.

Optimal-transport conditional flow matching (Lipman et al., arXiv:2210.02747): time runs from
t = 0 (noise) to t = 1 (data). For each of the two models, with t ~ U(0, 1) per sample, noise
x0 ~ N(0, I) and a data point x1,

    x_t = (1 - (1 - s) t) x0 + t x1,   target u = x1 - (1 - s) x0,   loss = E |v_hat(x_t, t) - u|^2

with s = ``training.sigma_min``: the jet model (``models.epic.FlowMatchingJetNetwork``) on the two
jets given mjj, the particle model (``models.epic.EpicParticleNetwork``) on each jet's particles
given that jet's (true) features and mjj, averaged over real particles only. ``loss`` is their sum.
The learned v is the ODE's dx/dt itself (``solvers.flow`` integrates it from 0 to 1).

The training loop, the EMA networks and the sampling interface are those of every generator
(``models.generator``); this module only states the flow-matching objective.
"""
from __future__ import annotations

import functools

import tensorflow as tf

from lhco_diffusion.config import EpicConfig, FlowMatchingJetConfig, TrainingConfig
from lhco_diffusion.data.layout import N_JET_FEATURES
from lhco_diffusion.models.epic import build_epic_particle_network, build_flow_matching_jet_network
from lhco_diffusion.models.generator import GenerativeModel, NoiseStream, event_weighted, masked_mean_square, per_jet


class FlowMatchingModel(GenerativeModel):
    """Fully connected jet and EPiC particle networks trained with the OT-CFM objective."""

    process = "flow_matching"

    def __init__(self, jet_config: FlowMatchingJetConfig, particle_config: EpicConfig, training: TrainingConfig,
                 n_jet_features: int = N_JET_FEATURES, **kwargs):
        jet_network = functools.partial(build_flow_matching_jet_network, jet_config, n_jet_features=n_jet_features)
        particle_network = functools.partial(build_epic_particle_network, particle_config,
                                             n_jet_features=n_jet_features)
        super().__init__(jet_network(), particle_network(), jet_network(name="ema_jet_network"),
                         particle_network(name="ema_particle_network"), training, **kwargs)
        self.sigma_min = training.sigma_min

    def _interpolated(self, x1: tf.Tensor, noise: NoiseStream) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(x_t, t (n, 1), target u) for data ``x1`` (n, ...) at t ~ U(0, 1)."""
        t = noise.uniform(tf.shape(x1)[:1])[:, None]
        shape = tf.concat([tf.shape(t)[:1], tf.ones(tf.rank(x1) - 1, tf.int32)], axis=0)
        t_broadcast = tf.reshape(t, shape)
        x0 = noise.normal(tf.shape(x1))
        x_t = (1.0 - (1.0 - self.sigma_min) * t_broadcast) * x0 + t_broadcast * x1
        return x_t, t, x1 - (1.0 - self.sigma_min) * x0

    def jet_loss(self, jets: tf.Tensor, condition: tf.Tensor, noise: NoiseStream, training: bool,
                 event_weight: tf.Tensor | None = None) -> tf.Tensor:
        """Mean squared velocity error of the jet model; jets (B, 2, 5), condition (B, 1)."""
        jets_t, t, target = self._interpolated(jets, noise)
        v_hat = self.jet_network((jets_t, t, condition), training=training)
        return tf.reduce_mean(event_weighted(tf.square(v_hat - target), event_weight))

    def particle_loss(self, particles: tf.Tensor, jets: tf.Tensor, condition: tf.Tensor, mask: tf.Tensor,
                      noise: NoiseStream, training: bool, jet_weight: tf.Tensor | None = None) -> tf.Tensor:
        """Mean squared velocity error of the particle model over real particles only."""
        particles, jets, condition, mask = per_jet(particles, jets, condition, mask)
        particles_t, t, target = self._interpolated(particles, noise)
        v_hat = self.particle_network((particles_t * mask[..., None], t, jets, condition, mask), training=training)
        return masked_mean_square(v_hat - target, mask, jet_weight)
