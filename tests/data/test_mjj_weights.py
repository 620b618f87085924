"""The mjj loss weights: flat where the sideband is flat, the inverse density's power where it falls."""
from __future__ import annotations

import numpy as np
import pytest

from lhco_diffusion.data import mjj_weights

SIGNAL_REGION = (-0.07, 0.22)  # in condition units, straddling two bin edges like the Pythia sample's


def _outside_signal_region(condition: np.ndarray) -> np.ndarray:
    return condition[(condition < SIGNAL_REGION[0]) | (condition >= SIGNAL_REGION[1])]


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_a_flat_sideband_gets_unit_weights_even_in_the_bins_the_signal_region_cuts(power):
    condition = _outside_signal_region(np.linspace(-1.0, 1.0, 400_001)[:-1])
    table = mjj_weights.condition_weight_table(condition, SIGNAL_REGION, power)
    in_signal_region = (table.edges[1:] <= SIGNAL_REGION[1]) & (table.edges[:-1] >= SIGNAL_REGION[0])
    assert in_signal_region.sum() == 2 and np.all(table.weights[in_signal_region] == 0.0)
    np.testing.assert_allclose(table.weights[~in_signal_region], 1.0, atol=1e-3)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_a_falling_spectrum_gets_its_density_to_the_minus_power_with_mean_one(power):
    """Conditions at the quantiles of p(c) ~ exp(-k c) on [-1, 1]: log w rises with slope power x k."""
    k = 1.5
    quantiles = (np.arange(200_000) + 0.5) / 200_000
    condition = _outside_signal_region(-np.log(np.exp(k) - quantiles * (np.exp(k) - np.exp(-k))) / k)
    table = mjj_weights.condition_weight_table(condition, SIGNAL_REGION, power)
    weights = table.weight_of(condition).numpy()
    assert np.mean(weights) == pytest.approx(1.0, rel=1e-5)
    filled = table.weights > 0
    centres = (table.edges[1:] + table.edges[:-1])[filled] / 2
    slope = np.polyfit(centres, np.log(table.weights[filled]), 1)[0]
    assert slope == pytest.approx(power * k, abs=0.02)
    assert np.all(np.diff(table.weights[filled]) >= 0) if power else np.all(table.weights[filled] == 1.0)


def test_conditions_beyond_the_edges_fall_in_the_outermost_bins():
    table = mjj_weights.ConditionWeightTable(np.linspace(-1, 1, mjj_weights.BINS + 1, dtype=np.float32),
                                             np.arange(mjj_weights.BINS, dtype=np.float32))
    np.testing.assert_array_equal(table.weight_of(np.array([-1.5, -1.0, -0.91, -0.9, 0.999, 1.0, 2.0])),
                                  [0, 0, 0, 1, 19, 19, 19])
    counted = mjj_weights.condition_weight_table(np.array([-1.5, -0.95, 0.55, 2.0]), (0.0, 0.0), 1.0)
    np.testing.assert_allclose(counted.weights[[0, 15, 19]], [2 / 3, 4 / 3, 4 / 3], rtol=1e-6)  # counts 2, 1, 1


def test_the_table_counts_a_condition_on_an_edge_in_the_bin_weight_of_finds_it_in():
    """Conditions exactly on the float32 edges, some of which round below their float64 values:
    every one is counted where it is looked up, so none gets weight 0 and they average exactly 1."""
    exact_edges = np.linspace(-1.0, 1.0, mjj_weights.BINS + 1)[1:-1]
    on_edges = exact_edges.astype(np.float32)
    assert np.any(on_edges < exact_edges)
    table = mjj_weights.condition_weight_table(on_edges, (0.0, 0.0), 1.0)
    weights = table.weight_of(on_edges).numpy()
    assert np.all(weights > 0.0)
    assert np.mean(weights) == pytest.approx(1.0, rel=1e-6)
