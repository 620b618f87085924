"""The jet and particle diffusion models as one ``keras.Model`` (DESIGN.md, Diffusion).

A batch is ``(particles (B, 2, P, 3), jets (B, 2, 5), condition (B, 1), mask (B, 2, P))`` in
model space (``data.transforms``). For each of the two models, with t ~ U(0, 1) per sample,

    x_t = alpha(t) x + sigma(t) eps,   v = alpha eps - sigma x,   loss = E |v_hat(x_t, t) - v|^2

the jet model on the two jet tokens given mjj, the particle model on each jet's particles given
that jet's (true) features and mjj, averaged over real particles only. ``loss`` is their sum.
With ``training.likelihood_weighting`` t is uniform in log-SNR and the loss is weighted so that
it equals the maximum-likelihood (g^2-weighted score-matching) objective up to a constant.

Every random draw (t and eps) is a stateless function of ``(noise_seed, training step)``, so a
run resumed from a checkpoint (which restores the optimizer's step counter) draws exactly the
noise the uninterrupted run would have; the test loss uses one fixed draw per batch shape, so it
changes only when the weights do. Give each Horovod worker its own ``noise_seed``.

The trained networks are followed by exponential moving averages (``training.ema_decay``);
``jet_velocity`` and ``particle_velocity`` evaluate the EMA networks for sampling and
likelihoods.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from lhco_diffusion.config import NetworkConfig, TrainingConfig
from lhco_diffusion.models import schedule
from lhco_diffusion.models.networks import build_jet_network, build_particle_network

LOSS_NAMES = ("loss", "loss_jet", "loss_particle")
TEST_NOISE_STEP = -1  # the "step" whose noise every test batch uses


class NoiseStream:
    """Independent stateless draws from the seed (``seed``, ``step``): draw k uses fold_in(seed, k)."""

    def __init__(self, seed: int, step):
        self.seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
        self.draws = 0

    def _next_seed(self) -> tf.Tensor:
        self.draws += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.draws)

    def uniform(self, shape) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, self._next_seed())

    def normal(self, shape) -> tf.Tensor:
        return tf.random.stateless_normal(shape, self._next_seed())


def _identity(tape: tf.GradientTape) -> tf.GradientTape:
    return tape


class DiffusionModel(tf.keras.Model):
    """Jet and particle velocity networks, their EMA copies and the v-prediction objective."""

    def __init__(self, jet_config: NetworkConfig, particle_config: NetworkConfig, training: TrainingConfig,
                 wrap_tape: Callable[[tf.GradientTape], tf.GradientTape] = _identity, noise_seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.jet_network = build_jet_network(jet_config)
        self.particle_network = build_particle_network(particle_config)
        self.ema_jet_network = build_jet_network(jet_config, name="ema_jet_network")
        self.ema_particle_network = build_particle_network(particle_config, name="ema_particle_network")
        for network, ema in self._network_pairs():
            ema.set_weights(network.get_weights())
        self.ema_decay = training.ema_decay
        self.clip_norm = training.clip_norm
        self.likelihood_weighting = training.likelihood_weighting
        self.wrap_tape = wrap_tape
        self.noise_seed = noise_seed
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        # One pair of bound methods for the samplers' v_fn(x, t, *conditioning): the same objects
        # every time, so tf.function reuses its graphs from batch to batch instead of retracing.
        self.sampling_velocities = (self.jet_velocity, self.particle_velocity)

    def _network_pairs(self):
        return ((self.jet_network, self.ema_jet_network), (self.particle_network, self.ema_particle_network))

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ------------------------------------------------------------------ objective

    def _diffusion_time(self, n: tf.Tensor, noise: "NoiseStream") -> tuple[tf.Tensor, tf.Tensor]:
        """(t (n, 1), loss weight (n, 1)) for n samples."""
        u = noise.uniform((n, 1))
        if not self.likelihood_weighting:
            return u, tf.ones_like(u)
        # lambda(t) |s_hat - s|^2 dt with lambda = g^2 equals alpha^2 |v_hat - v|^2 dlogsnr, so with
        # t uniform in log-SNR the weight of the v error is alpha^2 = sigmoid(logsnr).
        t = schedule.likelihood_weighted_time(u)
        return t, tf.math.sigmoid(schedule.logsnr(t))

    @staticmethod
    def _noised(x: tf.Tensor, t: tf.Tensor, noise: "NoiseStream") -> tuple[tf.Tensor, tf.Tensor]:
        """(x_t, v) for clean ``x`` (n, ...) at times ``t`` (n, 1)."""
        alpha, sigma = schedule.alpha_sigma(t)
        shape = tf.concat([tf.shape(t)[:1], tf.ones(tf.rank(x) - 1, tf.int32)], axis=0)
        alpha, sigma = tf.reshape(alpha, shape), tf.reshape(sigma, shape)
        eps = noise.normal(tf.shape(x))
        return alpha * x + sigma * eps, alpha * eps - sigma * x

    def jet_loss(self, jets: tf.Tensor, condition: tf.Tensor, noise: "NoiseStream",
                 training: bool) -> tf.Tensor:
        """Weighted mean squared v error of the jet model; jets (B, 2, 5), condition (B, 1)."""
        t, weight = self._diffusion_time(tf.shape(jets)[0], noise)
        jets_t, v = self._noised(jets, t, noise)
        v_hat = self.jet_network((jets_t, t, condition), training=training)
        return tf.reduce_mean(weight * tf.reduce_mean(tf.square(v_hat - v), axis=(1, 2))[:, None])

    def particle_loss(self, particles: tf.Tensor, jets: tf.Tensor, condition: tf.Tensor, mask: tf.Tensor,
                      noise: "NoiseStream", training: bool) -> tf.Tensor:
        """Weighted mean squared v error of the particle model over real particles only."""
        particles, jets, condition, mask = _per_jet(particles, jets, condition, mask)
        t, weight = self._diffusion_time(tf.shape(jets)[0], noise)
        particles_t, v = self._noised(particles, t, noise)
        real = mask[..., None]
        v_hat = self.particle_network((particles_t * real, t, jets, condition, mask), training=training)
        squared = tf.reduce_sum(tf.square(v_hat - v) * real, axis=(1, 2)) * weight[:, 0]
        n_values = tf.reduce_sum(real) * tf.cast(tf.shape(particles)[-1], tf.float32)
        return tf.reduce_sum(squared) / tf.maximum(n_values, 1.0)

    def diffusion_losses(self, batch, noise: "NoiseStream", training: bool) -> dict[str, tf.Tensor]:
        particles, jets, condition, mask = batch
        loss_jet = self.jet_loss(jets, condition, noise, training)
        loss_particle = self.particle_loss(particles, jets, condition, mask, noise, training)
        return {"loss": loss_jet + loss_particle, "loss_jet": loss_jet, "loss_particle": loss_particle}

    def _report(self, losses: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, batch):
        noise = NoiseStream(self.noise_seed, self.optimizer.iterations)
        with tf.GradientTape() as tape:
            losses = self.diffusion_losses(batch, noise, training=True)
        variables = self.jet_network.trainable_variables + self.particle_network.trainable_variables
        gradients = self.wrap_tape(tape).gradient(losses["loss"], variables)
        gradients = [tf.clip_by_norm(gradient, self.clip_norm) for gradient in gradients]
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._update_ema()
        return self._report(losses)

    def test_step(self, batch):
        return self._report(self.diffusion_losses(batch, NoiseStream(self.noise_seed, TEST_NOISE_STEP), training=False))

    def _update_ema(self) -> None:
        for network, ema in self._network_pairs():
            for weight, average in zip(network.weights, ema.weights):
                average.assign(self.ema_decay * average + (1.0 - self.ema_decay) * weight)

    # ------------------------------------------------------------------ sampling interface

    def jet_velocity(self, jets_t: tf.Tensor, t: tf.Tensor, condition: tf.Tensor, ema: bool = True) -> tf.Tensor:
        """v of jets_t (B, 2, 5) at t (B, 1) given condition (B, 1) -> (B, 2, 5)."""
        network = self.ema_jet_network if ema else self.jet_network
        return network((jets_t, t, condition))

    def particle_velocity(self, particles_t: tf.Tensor, t: tf.Tensor, jets: tf.Tensor, condition: tf.Tensor,
                          mask: tf.Tensor, ema: bool = True) -> tf.Tensor:
        """v of particles_t (B, 2, P, 3) at t (B, 1) given jets (B, 2, 5), condition (B, 1) and
        mask (B, 2, P) -> (B, 2, P, 3), zero in padded slots. Both jets share the event's t."""
        network = self.ema_particle_network if ema else self.particle_network
        per_jet_t = tf.repeat(t, 2, axis=0)
        flat_particles, flat_jets, flat_condition, flat_mask = _per_jet(particles_t, jets, condition, mask)
        v = network((flat_particles, per_jet_t, flat_jets, flat_condition, flat_mask))
        return tf.reshape(v, tf.shape(particles_t))


def _per_jet(particles, jets, condition, mask):
    """Event arrays -> per-jet arrays: (B, 2, P, 3) -> (2B, P, 3), (B, 2, 5) -> (2B, 5),
    condition (B, 1) -> (2B, 1) (each event's twice), mask (B, 2, P) -> (2B, P) float32."""
    n_jets = 2 * tf.shape(jets)[0]
    npart = tf.shape(particles)[2]
    return (tf.reshape(particles, (n_jets, npart, particles.shape[-1])),
            tf.reshape(jets, (n_jets, jets.shape[-1])),
            tf.repeat(condition, 2, axis=0),
            tf.reshape(tf.cast(mask, tf.float32), (n_jets, npart)))
