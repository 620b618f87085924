"""A Keras model trained on one scalar objective, with the train and test steps written once."""
from __future__ import annotations

from typing import Callable

import tensorflow as tf


class ObjectiveModel(tf.keras.Model):
    """Subclasses implement ``objective(batch, training) -> scalar``; ``fit`` minimises it and
    reports it as ``loss`` (``val_loss`` on validation data). ``wrap_tape`` turns the training
    step's gradient tape into a distributed one (Horovod)."""

    def __init__(self, wrap_tape: Callable[[tf.GradientTape], tf.GradientTape] = lambda tape: tape, **kwargs):
        super().__init__(**kwargs)
        self.wrap_tape = wrap_tape
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")

    def objective(self, batch, training: bool) -> tf.Tensor:
        raise NotImplementedError

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            loss = self.objective(batch, training=True)
        gradients = self.wrap_tape(tape).gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, batch):
        self.loss_tracker.update_state(self.objective(batch, training=False))
        return {"loss": self.loss_tracker.result()}
