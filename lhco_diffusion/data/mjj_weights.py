"""Per-event loss weights that flatten the sideband's falling mjj spectrum (``training.mjj_weight_power``).

The sideband's dijet-mass density falls about tenfold from 2.7 to 5 TeV, so a generator trained
on it sees few events above the signal region, which it reaches by interpolating between the two
sidebands. Weighting each training event's loss by

    w(mjj) = p_SB(mjj)^-power / mean over the training events of the same

(power 0: every event alike, the paper; 1: every mjj alike) moves the training's attention
toward the sparse high-mjj events. For a model conditioned on mjj the optimum stays where it
is, p(x | mjj) at every mjj; only the finite network's compromise between mjj values moves.

p_SB is a histogram of the training events' conditions (log mjj mapped to [-1, 1] over the
sideband, ``transforms.condition``) in ``BINS`` equal bins, each count divided by the part of
its bin outside the signal region, which the sideband never fills.

    table = condition_weight_table(train.condition[:, 0], signal_region=(-0.07, 0.22), power=0.5)
    weights = table.weight_of(condition)
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

BINS = 20


@dataclasses.dataclass(frozen=True)
class ConditionWeightTable:
    """Weights by condition bin: ``edges`` (BINS + 1,) from -1 to 1, ``weights`` (BINS,), float32."""

    edges: np.ndarray
    weights: np.ndarray

    def weight_of(self, condition: tf.Tensor | np.ndarray) -> tf.Tensor:
        """(N,) float32 weight of each condition (N,) by its bin, those beyond the edges in the
        outermost bins. TensorFlow ops, so the training step looks it up inside its graph."""
        index = tf.searchsorted(self.edges[1:-1], tf.cast(condition, tf.float32), side="right")
        return tf.gather(self.weights, tf.clip_by_value(index, 0, len(self.weights) - 1))


def condition_weight_table(condition: np.ndarray, signal_region: tuple[float, float],
                           power: float) -> ConditionWeightTable:
    """The table of w ~ p_SB^-power for the training events' ``condition`` (N,), normalised to a
    mean weight of 1 over them; ``signal_region`` is its (low, high) edge in condition units.
    Bins without events (inside the signal region) get weight 0."""
    condition = np.asarray(condition, np.float32).reshape(-1)
    lookup_edges = np.linspace(-1.0, 1.0, BINS + 1, dtype=np.float32)
    counts, _ = np.histogram(np.clip(condition, -1.0, 1.0), lookup_edges)  # binned exactly as weight_of bins
    edges = lookup_edges.astype(np.float64)
    width_in_signal_region = np.clip(np.minimum(edges[1:], signal_region[1]) - np.maximum(edges[:-1], signal_region[0]),
                                     0.0, None)
    outside = np.diff(edges) - width_in_signal_region
    filled = (counts > 0) & (outside > 0)
    weights = np.zeros(BINS)
    weights[filled] = (counts[filled] / outside[filled]) ** -power
    weights /= np.sum(counts * weights) / len(condition)
    return ConditionWeightTable(lookup_edges, weights.astype(np.float32))
