"""A conditional masked autoregressive flow p(x | c) (CATHODE's density model; ``tfp.bijectors``).

``ConditionalFlow(num_layers, hidden_units, n_features)``: ``num_layers`` affine MAF blocks, each
a MADE that also sees the condition c (B, 1), the feature order reversed between blocks, on a
standard normal. Each block's output is scaled by a learnable gate that starts at 0 (every
block starts as the identity, so a deep stack trains without batch normalisation) and the
log-scales are soft-clamped to +-``MAX_LOG_SCALE``. ``workflow.cathode_flow`` trains it.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from lhco_diffusion.errors import InputError
from lhco_diffusion.models.objective import ObjectiveModel

MAX_LOG_SCALE = 3.0  # soft clamp of the affine log-scales


class ConditionalFlow(ObjectiveModel):
    """p(x | c): a stack of conditional MAF blocks on a standard normal, x (B, 4), c (B, 1).

    ``log_prob(x, c)`` -> (B,); ``sample(c, noise)`` maps base noise (B, 4) to x. The loss of
    ``train_step``/``test_step`` is the mean negative log-likelihood.
    """

    def __init__(self, num_layers: int, hidden_units: tuple[int, ...], n_features: int,
                 **kwargs):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise InputError(f"flow.num_layers must be at least 1, not {num_layers}")
        bijectors = tfp.bijectors
        self.made_blocks = [GatedMade(n_features, hidden_units, name=f"made_{index}") for index in range(num_layers)]
        chain = []  # applied right to left by tfp.bijectors.Chain: last block first on sampling
        for index, made in enumerate(self.made_blocks):
            if index:
                chain.append(bijectors.Permute(list(reversed(range(n_features))), name=f"reverse_{index}"))
            chain.append(bijectors.MaskedAutoregressiveFlow(_clamped(made), name=f"maf_{index}"))
        self.bijector = bijectors.Chain(chain[::-1])
        base = tfp.distributions.MultivariateNormalDiag(tf.zeros(n_features))
        self.distribution = tfp.distributions.TransformedDistribution(base, self.bijector)

    def _conditioned(self, condition: tf.Tensor) -> dict:
        return {f"maf_{index}": {"conditional_input": condition} for index in range(len(self.made_blocks))}

    def log_prob(self, features: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        """(B,) log density of model-space features (B, 4) given conditions (B, 1)."""
        return self.distribution.log_prob(features, bijector_kwargs=self._conditioned(condition))

    def sample(self, condition: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """(B, 4) model-space features for conditions (B, 1) from standard-normal noise (B, 4)."""
        return self.bijector.forward(noise, **self._conditioned(condition))

    def call(self, inputs) -> tf.Tensor:
        """inputs = (features, condition) -> (B,) log densities."""
        return self.log_prob(*inputs)

    def objective(self, batch, training: bool) -> tf.Tensor:
        """Mean negative log-likelihood of ``batch = (features, condition)``."""
        features, condition = batch
        return -tf.reduce_mean(self.log_prob(features, condition))


class GatedMade(tf.keras.layers.Layer):
    """A conditional MADE (features (B, F), conditional_input (B, 1) -> (B, F, 2) shift and
    log-scale) whose output is multiplied by a learnable scalar that starts at 0, so every block
    starts as the identity and a deep stack cannot blow up before it has learnt anything."""

    def __init__(self, n_features: int, hidden_units: tuple[int, ...], **kwargs):
        super().__init__(**kwargs)
        self.made = tfp.bijectors.AutoregressiveNetwork(
            params=2, event_shape=(n_features,), conditional=True, conditional_event_shape=(1,),
            hidden_units=list(hidden_units), activation="relu")
        self.gate = self.add_weight(name="gate", shape=(), initializer="zeros")

    def call(self, features: tf.Tensor, conditional_input: tf.Tensor) -> tf.Tensor:
        return self.gate * self.made(features, conditional_input=conditional_input)


def _clamped(made: tf.keras.layers.Layer):
    """The MADE's (shift, log-scale) with the log-scale soft-clamped to +-MAX_LOG_SCALE."""
    def shift_and_log_scale(features, **kwargs):
        shift, log_scale = tf.unstack(made(features, **kwargs), axis=-1)
        return shift, MAX_LOG_SCALE * tf.tanh(log_scale / MAX_LOG_SCALE)
    return shift_and_log_scale
