"""Keras callbacks shared by the package's classifiers and flows."""
from __future__ import annotations

import math

import tensorflow as tf


class EarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Keras' early stopping on the validation loss, restoring the best weights also when the
    epochs run out before the patience does (Keras 2 restores them only on an early stop).

    No stop comes before ``min_epochs`` epochs: a full-phase-space classifier can sit for several
    epochs at the loss of a coin toss (ln 2) before it starts to learn, and stopping there would
    read as two indistinguishable samples. The best weights are tracked from the first epoch.
    """

    def __init__(self, patience: int, min_epochs: int = 0):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.min_epochs = min_epochs

    def on_epoch_end(self, epoch, logs=None):
        patience = self.patience
        if epoch + 1 < self.min_epochs:
            self.patience = math.inf
        super().on_epoch_end(epoch, logs)
        self.patience = patience

    def on_train_end(self, logs=None):
        if self.stopped_epoch == 0 and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        super().on_train_end(logs)
