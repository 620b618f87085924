"""The jet and particle diffusion models as one ``keras.Model`` (DESIGN.md, Diffusion).

A batch is ``(particles (B, 2, P, 3), jets (B, 2, 5), condition (B, 1), mask (B, 2, P))`` in
model space (``data.transforms``). For each of the two models, with t ~ U(0, 1) per sample,

    x_t = alpha(t) x + sigma(t) eps,   v = alpha eps - sigma x,   loss = E |v_hat(x_t, t) - v|^2

the jet model on the two jet tokens given mjj, the particle model on each jet's particles given
that jet's (true) features and mjj, averaged over real particles only. ``loss`` is their sum.
With ``training.likelihood_weighting`` t is uniform in log-SNR and the loss is weighted so that
it equals the maximum-likelihood (g^2-weighted score-matching) objective up to a constant.

The training loop, the EMA networks and the sampling interface are those of every generator
(``models.generator``); this module only states the diffusion objective.
"""
from __future__ import annotations

import functools

import tensorflow as tf

from lhco_diffusion.config import NetworkConfig, TrainingConfig
from lhco_diffusion.data.layout import N_JET_FEATURES
from lhco_diffusion.solvers import schedule
from lhco_diffusion.models.generator import GenerativeModel, NoiseStream, event_weighted, masked_mean_square, per_jet
from lhco_diffusion.models.networks import build_jet_network, build_particle_network

class DiffusionModel(GenerativeModel):
    """Transformer jet and particle networks trained with the v-prediction objective."""

    process = "diffusion"

    def __init__(self, jet_config: NetworkConfig, particle_config: NetworkConfig, training: TrainingConfig,
                 n_jet_features: int = N_JET_FEATURES, **kwargs):
        jet_network = functools.partial(build_jet_network, jet_config, n_jet_features=n_jet_features)
        particle_network = functools.partial(build_particle_network, particle_config, n_jet_features=n_jet_features)
        super().__init__(jet_network(), particle_network(), jet_network(name="ema_jet_network"),
                         particle_network(name="ema_particle_network"), training, **kwargs)
        self.likelihood_weighting = training.likelihood_weighting

    def _diffusion_time(self, n: tf.Tensor, noise: NoiseStream) -> tuple[tf.Tensor, tf.Tensor]:
        """(t (n, 1), loss weight (n, 1)) for n samples."""
        u = noise.uniform((n, 1))
        if not self.likelihood_weighting:
            return u, tf.ones_like(u)
        # lambda(t) |s_hat - s|^2 dt with lambda = g^2 equals alpha^2 |v_hat - v|^2 dlogsnr, so with
        # t uniform in log-SNR the weight of the v error is alpha^2 = sigmoid(logsnr).
        t = schedule.likelihood_weighted_time(u)
        return t, tf.math.sigmoid(schedule.logsnr(t))

    @staticmethod
    def _noised(x: tf.Tensor, t: tf.Tensor, noise: NoiseStream) -> tuple[tf.Tensor, tf.Tensor]:
        """(x_t, v) for clean ``x`` (n, ...) at times ``t`` (n, 1)."""
        alpha, sigma = schedule.alpha_sigma(t)
        shape = tf.concat([tf.shape(t)[:1], tf.ones(tf.rank(x) - 1, tf.int32)], axis=0)
        alpha, sigma = tf.reshape(alpha, shape), tf.reshape(sigma, shape)
        eps = noise.normal(tf.shape(x))
        return alpha * x + sigma * eps, alpha * eps - sigma * x

    def jet_loss(self, jets: tf.Tensor, condition: tf.Tensor, noise: NoiseStream, training: bool,
                 event_weight: tf.Tensor | None = None) -> tf.Tensor:
        """Weighted mean squared v error of the jet model; jets (B, 2, 5), condition (B, 1)."""
        t, weight = self._diffusion_time(tf.shape(jets)[0], noise)
        jets_t, v = self._noised(jets, t, noise)
        v_hat = self.jet_network((jets_t, t, condition), training=training)
        return tf.reduce_mean(event_weighted(weight * tf.reduce_mean(tf.square(v_hat - v), axis=(1, 2))[:, None],
                                             event_weight))

    def particle_loss(self, particles: tf.Tensor, jets: tf.Tensor, condition: tf.Tensor, mask: tf.Tensor,
                      noise: NoiseStream, training: bool, jet_weight: tf.Tensor | None = None) -> tf.Tensor:
        """Weighted mean squared v error of the particle model over real particles only."""
        particles, jets, condition, mask = per_jet(particles, jets, condition, mask)
        t, weight = self._diffusion_time(tf.shape(jets)[0], noise)
        particles_t, v = self._noised(particles, t, noise)
        v_hat = self.particle_network((particles_t * mask[..., None], t, jets, condition, mask), training=training)
        return masked_mean_square(v_hat - v, mask, event_weighted(weight[:, 0], jet_weight))
