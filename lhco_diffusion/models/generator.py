"""What every background generator shares: two networks, their EMA copies and one training loop.

A generator models the two jets of an event given mjj, and each jet's particles given that jet,
with one velocity network each (``jet_network``, ``particle_network``). A subclass states its
objective in ``losses`` and its time convention in ``process`` (the name of a ``solvers``
process: how its velocity is integrated, which solvers apply, where the noise is); everything
else is here and identical for every generator:

    train_step   losses under a gradient tape (wrapped for Horovod), gradients clipped per
                 tensor to ``training.clip_norm``, one optimizer step, the EMA update; with
                 ``real_particles_per_event`` set (multiplicity-bucketed batches,
                 ``data.dataset``) the particle loss, a mean over the batch's real particles,
                 is rescaled by real particles in the batch / their expected number, so that
                 every particle of the epoch carries the same weight however the batches group them
    test_step    the same losses, each batch with its own noise draw keyed by its content
                 (``evaluation_noise_step``): the same in every epoch, so that epochs compare
                 on common noise, and independent from batch to batch
    jet_velocity, particle_velocity
                 the EMA networks as the solvers' ``v_fn(x, t, *conditioning)``

A batch is ``(particles (B, 2, P, 3), jets (B, 2, 5), condition (B, 1), mask (B, 2, P))`` in
model space (``data.transforms``). Every random draw is a stateless function of
``(noise_seed, optimizer step)`` (``NoiseStream``), so a resumed run draws exactly the noise the
uninterrupted run would have. Give each Horovod worker its own ``noise_seed``.

Mixed precision (``training.mixed_precision``): build the networks inside
``precision_policy("bfloat16")``; their variables, outputs, the losses, the EMA copies and the
samplers' state stay float32, only the layers compute in the lower precision (float16 adds
Keras' dynamic loss scaling).

The networks' calls are fixed for all generators:

    jet_network((jets_t (B, 2, 5), t (B, 1), condition (B, 1)))                    -> (B, 2, 5)
    particle_network((particles_t (J, P, 3), t (J, 1), jet (J, 5), condition (J, 1),
                      mask (J, P)))                                                 -> (J, P, 3)
"""
from __future__ import annotations

import contextlib
from typing import Callable

import tensorflow as tf

from lhco_diffusion.config import TrainingConfig
from lhco_diffusion.data.mjj_weights import ConditionWeightTable

LOSS_NAMES = ("loss", "loss_jet", "loss_particle")


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


def evaluation_noise_step(batch) -> tf.Tensor:
    """A negative "optimizer step" (never one of training's) that identifies a test batch by its
    jets' bits: a stateless key, the same for the same batch in every epoch and on resuming."""
    jets = tf.cast(batch[1], tf.float32)
    bits = tf.cast(tf.bitcast(jets, tf.int32), tf.int64)
    return -1 - tf.abs(tf.reduce_sum(bits))


def _identity(tape: tf.GradientTape) -> tf.GradientTape:
    return tape


@contextlib.contextmanager
def precision_policy(precision: str):
    """Layers built inside compute in ``precision`` (float32 | bfloat16 | float16) with float32
    variables (Keras mixed precision); the global policy is float32 again afterwards."""
    policy = "float32" if precision == "float32" else f"mixed_{precision}"
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


class GenerativeModel(tf.keras.Model):
    """Jet and particle velocity networks, their EMA copies and the shared training loop.

    Subclasses set ``process`` and implement ``jet_loss`` and ``particle_loss``; ``losses`` returns
    the ``LOSS_NAMES`` (``loss`` = ``loss_jet`` + ``loss_particle`` is minimised).
    """

    process: str = ""  # the solvers' name of this generator's time convention

    def __init__(self, jet_network: tf.keras.Model, particle_network: tf.keras.Model,
                 ema_jet_network: tf.keras.Model, ema_particle_network: tf.keras.Model, training: TrainingConfig,
                 wrap_tape: Callable[[tf.GradientTape], tf.GradientTape] = _identity, noise_seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.jet_network, self.particle_network = jet_network, particle_network
        self.ema_jet_network, self.ema_particle_network = ema_jet_network, ema_particle_network
        for network, ema in self._network_pairs():
            ema.set_weights(network.get_weights())
        self.ema_decay, self.ema_warmup = training.ema_decay, training.ema_warmup
        self.clip_norm = training.clip_norm
        self.jet_noise_draws = training.jet_noise_draws
        self.wrap_tape = wrap_tape
        self.noise_seed = noise_seed
        self.real_particles_per_event: float | None = None  # set for multiplicity-bucketed batches
        self.mjj_weight_table: ConditionWeightTable | None = None  # set for mjj-weighted losses
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        # One pair of bound methods for the samplers' v_fn(x, t, *conditioning): the same objects
        # every time, so tf.function reuses its graphs from batch to batch instead of retracing.
        self.sampling_velocities = (self.jet_velocity, self.particle_velocity)

    def _network_pairs(self):
        return ((self.jet_network, self.ema_jet_network), (self.particle_network, self.ema_particle_network))

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def trainable_network_variables(self) -> list[tf.Variable]:
        """The variables the optimizer updates (not the EMA copies)."""
        return self.jet_network.trainable_variables + self.particle_network.trainable_variables

    def losses(self, batch, noise: NoiseStream, training: bool) -> dict[str, tf.Tensor]:
        """The objective of a batch: the jet model's loss plus the particle model's. The jet loss
        is the mean over ``training.jet_noise_draws`` independent noise draws (times, noise) per
        event: the same expectation, a K times smaller variance. With ``mjj_weight_table`` set
        (``training.mjj_weight_power``) each event's terms in both losses carry its mjj weight."""
        particles, jets, condition, mask = batch
        event_weight = self._event_weight(condition)
        jet_weight = None if event_weight is None else tf.repeat(event_weight, 2)  # the rows of per_jet
        loss_jet = self.jet_loss(self._per_draw(jets), self._per_draw(condition), noise, training,
                                 event_weight=self._per_draw(event_weight))
        loss_particle = self.particle_loss(particles, jets, condition, mask, noise, training, jet_weight=jet_weight)
        return {"loss": loss_jet + loss_particle, "loss_jet": loss_jet, "loss_particle": loss_particle}

    def _per_draw(self, tensor: tf.Tensor | None) -> tf.Tensor | None:
        """The rows of the jet loss: each event's row (B, ...) ``jet_noise_draws`` times in a row."""
        if tensor is None or self.jet_noise_draws == 1:
            return tensor
        return tf.repeat(tensor, self.jet_noise_draws, axis=0)

    def _event_weight(self, condition: tf.Tensor) -> tf.Tensor | None:
        """(B,) the mjj weight of each event's condition (B, 1) in ``mjj_weight_table``; None without one."""
        return None if self.mjj_weight_table is None else self.mjj_weight_table.weight_of(condition[:, 0])

    def jet_loss(self, jets: tf.Tensor, condition: tf.Tensor, noise: NoiseStream, training: bool,
                 event_weight: tf.Tensor | None = None) -> tf.Tensor:
        """The jet model's loss on jets (B, 2, 5) given condition (B, 1), each event's term times
        its ``event_weight`` (B,) if given."""
        raise NotImplementedError

    def particle_loss(self, particles: tf.Tensor, jets: tf.Tensor, condition: tf.Tensor, mask: tf.Tensor,
                      noise: NoiseStream, training: bool, jet_weight: tf.Tensor | None = None) -> tf.Tensor:
        """The particle model's loss over the real particles of (B, 2, P, 3) given their jets, each
        particle's term times its jet's ``jet_weight`` (2B,) (the rows of ``per_jet``) if given."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training loop

    def _report(self, losses: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, batch):
        noise = NoiseStream(self.noise_seed, self.optimizer.iterations)
        scaled = isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            losses = self.losses(batch, noise, training=True)
            if self.real_particles_per_event:
                losses = self._per_particle_weighted(losses, batch[3])
            objective = self.optimizer.get_scaled_loss(losses["loss"]) if scaled else losses["loss"]
        variables = self.trainable_network_variables
        gradients = self.wrap_tape(tape).gradient(objective, variables)
        if scaled:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        gradients = [tf.clip_by_norm(gradient, self.clip_norm) for gradient in gradients]
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._update_ema()
        return self._report(losses)

    def _per_particle_weighted(self, losses: dict[str, tf.Tensor], mask: tf.Tensor) -> dict[str, tf.Tensor]:
        """``losses`` with loss_particle x (real particles of mask (B, 2, P)) / (B x the mean per event)."""
        expected = tf.cast(tf.shape(mask)[0], tf.float32) * self.real_particles_per_event
        loss_particle = losses["loss_particle"] * tf.reduce_sum(tf.cast(mask, tf.float32)) / expected
        return {**losses, "loss": losses["loss_jet"] + loss_particle, "loss_particle": loss_particle}

    def test_step(self, batch):
        noise = NoiseStream(self.noise_seed, evaluation_noise_step(batch))
        return self._report(self.losses(batch, noise, training=False))

    def _update_ema(self) -> None:
        decay = tf.constant(self.ema_decay, tf.float32)
        if self.ema_warmup:
            steps = tf.cast(self.optimizer.iterations, tf.float32)  # already counts this step
            decay = tf.minimum(decay, (1.0 + steps) / (10.0 + steps))
        for network, ema in self._network_pairs():
            for weight, average in zip(network.weights, ema.weights):
                average.assign(decay * average + (1.0 - decay) * weight)

    # ------------------------------------------------------------------ sampling interface

    def jet_velocity(self, jets_t: tf.Tensor, t: tf.Tensor, condition: tf.Tensor, ema: bool = True) -> tf.Tensor:
        """The jet field at jets_t (B, 2, 5), t (B, 1), given condition (B, 1) -> (B, 2, 5)."""
        network = self.ema_jet_network if ema else self.jet_network
        return network((jets_t, t, condition))

    def particle_velocity(self, particles_t: tf.Tensor, t: tf.Tensor, jets: tf.Tensor, condition: tf.Tensor,
                          mask: tf.Tensor, ema: bool = True) -> tf.Tensor:
        """The particle field at particles_t (B, 2, P, 3), t (B, 1), given jets (B, 2, 5), condition
        (B, 1) and mask (B, 2, P) -> (B, 2, P, 3), zero in padded slots. Both jets share the event's t."""
        network = self.ema_particle_network if ema else self.particle_network
        per_jet_t = tf.repeat(t, 2, axis=0)
        flat_particles, flat_jets, flat_condition, flat_mask = per_jet(particles_t, jets, condition, mask)
        v = network((flat_particles, per_jet_t, flat_jets, flat_condition, flat_mask))
        return tf.reshape(v, tf.shape(particles_t))


def per_jet(particles, jets, condition, mask):
    """Event arrays -> per-jet arrays: (B, 2, P, 3) -> (2B, P, 3), (B, 2, 5) -> (2B, 5),
    condition (B, 1) -> (2B, 1) (each event's twice), mask (B, 2, P) -> (2B, P) float32."""
    n_jets = 2 * tf.shape(jets)[0]
    npart = tf.shape(particles)[2]
    return (tf.reshape(particles, (n_jets, npart, particles.shape[-1])),
            tf.reshape(jets, (n_jets, jets.shape[-1])),
            tf.repeat(condition, 2, axis=0),
            tf.reshape(tf.cast(mask, tf.float32), (n_jets, npart)))


def event_weighted(values: tf.Tensor, event_weight: tf.Tensor | None) -> tf.Tensor:
    """values (B, ...) times event_weight (B,) along the first axis; values as they are without weights."""
    if event_weight is None:
        return values
    return values * tf.reshape(event_weight, [-1] + [1] * (values.shape.rank - 1))


def masked_mean_square(error: tf.Tensor, mask: tf.Tensor, weight: tf.Tensor | None = None) -> tf.Tensor:
    """Mean of error^2 over the real entries: error (J, P, F), mask (J, P), optional weight (J,)."""
    real = mask[..., None]
    squared = tf.reduce_sum(tf.square(error) * real, axis=(1, 2))
    if weight is not None:
        squared = squared * weight
    n_values = tf.reduce_sum(real) * tf.cast(tf.shape(error)[-1], tf.float32)
    return tf.reduce_sum(squared) / tf.maximum(n_values, 1.0)
