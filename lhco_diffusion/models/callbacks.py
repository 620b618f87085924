"""Keras callbacks shared by the package's classifiers and flows."""
from __future__ import annotations

import tensorflow as tf


class EarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Keras' early stopping on the validation loss, restoring the best weights also when the
    epochs run out before the patience does (Keras 2 restores them only on an early stop)."""

    def __init__(self, patience: int):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)

    def on_train_end(self, logs=None):
        if self.stopped_epoch == 0 and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        super().on_train_end(logs)
