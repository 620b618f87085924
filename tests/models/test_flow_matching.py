"""The flow-matching generator: exact Gaussian answers for the solvers and the likelihood, the EPiC
network's symmetries, configuration, and the paper-size weight counts.

For data x1 ~ N(mu, Sigma) the OT-CFM path x_t = a x0 + t x1, a = 1 - (1 - s) t, x0 ~ N(0, I) is
Gaussian, x_t ~ N(t mu, C(t)), C = a^2 I + t^2 Sigma, and the marginal velocity is the regression
of the target u = x1 - (1 - s) x0 on x_t (jointly Gaussian, Cov(u, x_t) = t Sigma - (1 - s) a I):

    v(x, t) = mu + (t Sigma - (1 - s) a I) C(t)^-1 (x - t mu)

In Sigma's eigenbasis everything is diagonal, and the ODE's solution from x(0) = z is
x(t) = t mu + C(t)^(1/2) z: the flow ends at mu + (Sigma + s^2 I)^(1/2) z, whose density is
N(mu, Sigma + s^2 I).
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

from lhco_diffusion import config as config_module
from lhco_diffusion.solvers import likelihood as ode, sampling
from lhco_diffusion.workflow import generation, likelihood
from lhco_diffusion.config import EpicConfig
from lhco_diffusion.data import transforms
from lhco_diffusion.models.build import build_generator
from lhco_diffusion.models.epic import build_epic_particle_network
from lhco_diffusion.models.flow_matching import FlowMatchingModel
from lhco_diffusion.models.generator import NoiseStream
from lhco_diffusion.solvers import flow
from conftest import CONFIGS

SIGMA_MIN = 1.0e-4
FLOW_MATCHING = ["generator=flow_matching", "sampling.solver=midpoint"]


class GaussianFlow:
    """The exact OT-CFM velocity, flow map and density of N(mean, covariance) data along the last axis."""

    def __init__(self, mean, covariance, sigma_min: float = SIGMA_MIN):
        self.mean, self.covariance, self.sigma_min = np.asarray(mean), np.asarray(covariance), sigma_min
        self.eigenvalues, self.basis = np.linalg.eigh(self.covariance)

    def velocity(self, x, t):
        """v(x (batch, ..., D), t (batch, 1)) as TensorFlow ops (differentiable for the divergence)."""
        t = tf.reshape(t, tf.concat([tf.shape(t)[:1], tf.ones(tf.rank(x) - 1, tf.int32)], axis=0))
        mean, basis = tf.constant(self.mean, tf.float32), tf.constant(self.basis, tf.float32)
        eigenvalues = tf.constant(self.eigenvalues, tf.float32)
        a = 1.0 - (1.0 - self.sigma_min) * t
        coefficient = (t * eigenvalues - (1.0 - self.sigma_min) * a) / (a**2 + t**2 * eigenvalues)
        components = tf.einsum("...i,ij->...j", x - t * mean, basis)
        return mean + tf.einsum("...j,ij->...i", coefficient * components, basis)

    def endpoint(self, z):
        """The exact flow of noise z (..., D) to t = 1."""
        components = (z @ self.basis) * np.sqrt(self.eigenvalues + self.sigma_min**2)
        return self.mean + components @ self.basis.T

    def log_density(self, x, mask=None):
        """log N(x; mean, covariance + s^2 I) summed over the real vectors: x (batch, ..., D) -> (batch,)."""
        density = multivariate_normal(self.mean, self.covariance + self.sigma_min**2 * np.eye(len(self.mean)))
        values = density.logpdf(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])
        if mask is not None:
            values = values * mask[..., 0]
        return values.reshape(len(x), -1).sum(axis=1)


def _gaussian(dimension: int, seed: int) -> GaussianFlow:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dimension, dimension)))
    stds = np.linspace(0.2, 1.5, dimension)
    return GaussianFlow(rng.normal(size=dimension), basis @ np.diag(stds**2) @ basis.T)


def _velocity_fn(gaussian: GaussianFlow):
    def v_fn(x, t):
        return gaussian.velocity(x, t)
    return v_fn


def _check_moments(samples: np.ndarray, gaussian: GaussianFlow) -> None:
    """Mean and covariance of (n, D) samples agree with the target within 5 Monte Carlo sigma."""
    n = len(samples)
    target = gaussian.covariance + SIGMA_MIN**2 * np.eye(len(gaussian.mean))
    variances = np.diag(target)
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - gaussian.mean), 5 * np.sqrt(variances / n))
    covariance_error = np.sqrt((np.outer(variances, variances) + target**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(samples.T) - target), 5 * covariance_error)


def test_sampling_reproduces_a_gaussian():
    gaussian = _gaussian(4, seed=0)
    noise = np.random.default_rng(1).standard_normal((4000, 4)).astype(np.float32)
    samples = flow.sample(_velocity_fn(gaussian), noise, num_steps=32, solver="midpoint").numpy()
    _check_moments(samples, gaussian)


def test_sampling_reproduces_a_masked_gaussian_point_cloud():
    gaussian = _gaussian(3, seed=2)
    rng = np.random.default_rng(3)
    n_real = rng.integers(1, 7, size=1500)
    mask = (np.arange(6) < n_real[:, None]).astype(np.float32)[..., None]  # (1500, 6, 1)
    noise = rng.standard_normal((1500, 6, 3)).astype(np.float32)
    samples = flow.sample(_velocity_fn(gaussian), noise, num_steps=32, solver="heun", mask=mask).numpy()
    assert np.all(samples[mask[..., 0] == 0] == 0.0)
    _check_moments(samples[mask[..., 0] == 1], gaussian)


def test_error_table_shows_the_orders_of_euler_midpoint_and_heun():
    """Largest error of the endpoint against the exact flow map; printed with -s."""
    gaussian = _gaussian(4, seed=4)
    noise = np.random.default_rng(5).standard_normal((256, 4))
    exact = gaussian.endpoint(noise)
    steps = (4, 8, 16, 32, 64)
    errors = {solver: [float(np.max(np.abs(flow.sample(_velocity_fn(gaussian), noise, n, solver).numpy() - exact)))
                       for n in steps] for solver in flow.SOLVERS}
    print("\nmax |x(1) - exact| for N(mu, Sigma) data, stds 0.2 ... 1.5")
    print("steps " + "".join(f"{solver:>12}" for solver in flow.SOLVERS))
    for row, n in enumerate(steps):
        print(f"{n:5d} " + "".join(f"{errors[solver][row]:12.2e}" for solver in flow.SOLVERS))
    order = {solver: np.log2(errors[solver][-2] / errors[solver][-1]) for solver in flow.SOLVERS}
    assert 0.8 < order["euler"] < 1.3, order
    assert order["midpoint"] > 1.7 and order["heun"] > 1.7, order
    assert errors["midpoint"][-1] < 1e-3 and errors["heun"][-1] < 1e-3


def test_likelihood_matches_the_exact_gaussian_density():
    gaussian = _gaussian(4, seed=6)
    x = np.random.default_rng(7).multivariate_normal(gaussian.mean, gaussian.covariance, size=8)
    log_p = ode.log_likelihood(_velocity_fn(gaussian), x, exact=True, process="flow_matching")
    np.testing.assert_allclose(log_p, gaussian.log_density(x), rtol=1e-3)


def test_likelihood_of_a_masked_point_cloud_counts_only_real_particles():
    gaussian = _gaussian(3, seed=8)
    rng = np.random.default_rng(9)
    mask = (np.arange(5) < np.array([5, 3, 1, 4])[:, None]).astype(np.float64)[..., None]
    x = rng.multivariate_normal(gaussian.mean, gaussian.covariance, size=(4, 5)) * mask
    log_p = ode.log_likelihood(_velocity_fn(gaussian), x, mask=mask, exact=True, process="flow_matching")
    np.testing.assert_allclose(log_p, gaussian.log_density(x, mask), rtol=1e-3)


def test_partial_generation_interpolates_between_the_input_and_a_fresh_sample():
    gaussian = _gaussian(2, seed=10)
    x1 = np.random.default_rng(11).multivariate_normal(gaussian.mean, gaussian.covariance, size=500)
    v_fn = _velocity_fn(gaussian)
    close = flow.partial_diffusion(v_fn, x1, t_star=1e-3, num_steps=64, seed=0).numpy()
    np.testing.assert_allclose(close, x1, atol=0.02)
    fresh = flow.partial_diffusion(v_fn, x1, t_star=1.0, num_steps=8, seed=0).numpy()
    direct = flow.sample(v_fn, np.random.default_rng(0).standard_normal(x1.shape), 8).numpy()
    np.testing.assert_allclose(fresh, direct, atol=1e-5)
    assert flow.steps_above(1.0 - 0.3, 100) == 30


# ---------------------------------------------------------------------- the EPiC network

TINY = EpicConfig(hidden_dim=8, latent_dim=8, num_layers=2, frequencies=4)


def _particle_inputs(seed: int, n_jets: int = 3, npart: int = 6):
    rng = np.random.default_rng(seed)
    mask = (np.arange(npart) < np.array([6, 4, 1])[:n_jets, None]).astype(np.float32)
    particles = rng.normal(size=(n_jets, npart, 3)).astype(np.float32) * mask[..., None]
    return [particles, rng.uniform(size=(n_jets, 1)).astype(np.float32),
            rng.normal(size=(n_jets, 5)).astype(np.float32), rng.normal(size=(n_jets, 1)).astype(np.float32), mask]


@pytest.mark.parametrize("weight_norm", [True, False])
def test_epic_network_is_permutation_equivariant(weight_norm):
    network = build_epic_particle_network(EpicConfig(**{**TINY.__dict__, "weight_norm": weight_norm}))
    inputs = _particle_inputs(0)
    permutation = np.random.default_rng(1).permutation(6)
    output = network(inputs).numpy()
    permuted = network([inputs[0][:, permutation], *inputs[1:4], inputs[4][:, permutation]]).numpy()
    np.testing.assert_allclose(permuted, output[:, permutation], atol=1e-5)
    assert np.abs(output).max() > 1e-3


def test_padded_particles_neither_influence_nor_receive_anything():
    network = build_epic_particle_network(TINY)
    inputs = _particle_inputs(2)
    output = network(inputs).numpy()
    padded = inputs[4] == 0
    assert np.all(output[padded] == 0.0)
    garbage = inputs[0] + 100.0 * padded[..., None]  # junk in the padded slots
    np.testing.assert_array_equal(network([garbage, *inputs[1:]]).numpy(), output)
    longer = [np.pad(inputs[0], ((0, 0), (0, 3), (0, 0)), constant_values=7.0), *inputs[1:4],
              np.pad(inputs[4], ((0, 0), (0, 3)))]  # three more padded slots
    np.testing.assert_allclose(network(longer).numpy()[:, :6], output, atol=1e-6)


def test_training_pairs_lie_on_the_optimal_transport_path(test_config):
    """x_t = (1 - (1 - s) t) x0 + t x1 with x0 ~ N(0, I), and the target is x1 - (1 - s) x0."""
    config = config_module.from_dict(test_config.to_dict(), "test.yaml", FLOW_MATCHING)
    model = build_generator(config)
    assert isinstance(model, FlowMatchingModel) and model.process == "flow_matching"
    x1 = 3.0 + tf.random.stateless_normal((4000, 5), (1, 2))
    x_t, t, target = model._interpolated(x1, NoiseStream(3, 0))
    x0 = (x_t - t * x1) / (1.0 - (1.0 - model.sigma_min) * t)
    assert abs(float(tf.reduce_mean(x0))) < 0.02 and abs(float(tf.math.reduce_std(x0)) - 1.0) < 0.02
    np.testing.assert_allclose(target, x1 - (1.0 - model.sigma_min) * x0, atol=1e-3)
    assert 0.0 <= float(tf.reduce_min(t)) and float(tf.reduce_max(t)) <= 1.0 and t.shape == (4000, 1)


# ---------------------------------------------------------------------- configuration and whole events

def test_config_selects_the_generator_and_checks_its_solvers(test_config):
    values = test_config.to_dict()
    assert values["generator"] == "diffusion"
    config = config_module.from_dict(values, "test.yaml", FLOW_MATCHING)
    assert config.generator == "flow_matching" and config.to_dict()["generator"] == "flow_matching"
    assert config_module.from_dict(config.to_dict()).generator == "flow_matching"
    with pytest.raises(config_module.ConfigError, match="euler, midpoint, heun for the flow_matching generator"):
        config_module.from_dict(values, "test.yaml", ["generator=flow_matching"])  # test.yaml's dpm2
    with pytest.raises(config_module.ConfigError, match="generator must be one of diffusion, flow_matching"):
        config_module.from_dict({**values, "generator": "gan"})
    with pytest.raises(config_module.ConfigError, match="training.optimizer must be one of adam, adamw"):
        config_module.from_dict(values, "test.yaml", ["training.optimizer=sgd"])
    assert config_module.GENERATOR_SOLVERS == {"diffusion": sampling.SOLVERS, "flow_matching": flow.SOLVERS}


def test_flow_matching_events_and_their_likelihoods(test_config, processed_file):
    """Whole events from an (untrained) flow-matching model, by noise and partially, and their log p."""
    from lhco_diffusion.data import processed

    config = config_module.from_dict(test_config.to_dict(), "test.yaml", FLOW_MATCHING)
    model = build_generator(config)
    events = processed.load(processed_file, 0, 6, npart=config.data.npart)
    stats = transforms.fit(events, config.transforms, config.data.sideband)
    generated = generation.generate_events(model, stats, events.mjj, config.data.npart, "euler", 3, seed=0)
    assert generated.particles.shape == events.particles.shape and np.all(np.isfinite(generated.particles))
    partial = generation.partially_diffuse_events(model, stats, events, events.mjj, 0.5, config.data.npart,
                                                  "heun", 4, seed=0)
    np.testing.assert_array_equal(partial.mask.sum(axis=-1), np.minimum(events.mask.sum(axis=-1), config.data.npart))
    with pytest.raises(generation.InputError, match="euler, midpoint, heun"):
        generation.generate_events(model, stats, events.mjj, config.data.npart, "dpm2", 3, seed=0)
    result = likelihood.event_log_likelihood(model, stats, events.select(slice(0, 3)), exact=False, atol=1e-3,
                                             rtol=1e-3)  # loose: an untrained field needs many RK45 steps
    assert result["log_p_particles"].shape == (3, 2) and np.all(np.isfinite(result["score"]))


def test_paper_size_weight_counts():
    """configs/lhco_279_fm.yaml: paper Table I quotes ~380k (jet FM) and ~2M (particle FM) weights."""
    config = config_module.load(CONFIGS / "lhco_279_fm.yaml")
    model = build_generator(config)
    counts = {name: int(sum(np.prod(w.shape) for w in network.trainable_weights))
              for name, network in (("jet", model.jet_network), ("particle", model.particle_network))}
    print(f"\nweights of the paper-size flow-matching networks: {counts}")
    assert 0.85 * 380e3 < counts["jet"] < 1.15 * 380e3
    assert 0.9 * 2e6 < counts["particle"] < 1.1 * 2e6


def test_evaluate_draws_each_generator_in_its_own_colour(test_config, processed_file, tmp_path):
    """Score directories and feature histograms are named after the generator: diffusion red, flow matching blue."""
    import matplotlib

    from lhco_diffusion.workflow import evaluation, plotting, tasks, weak_supervision
    from lhco_diffusion.data import processed

    events = processed.load(processed_file, 0, 200, npart=test_config.data.npart)
    paths = {}
    for generator, rows in (("diffusion", slice(0, 100)), ("flow_matching", slice(100, 200))):
        paths[generator] = tmp_path / f"{generator}.h5"
        with processed.EventWriter(paths[generator], test_config.data.npart, {"generator": generator}) as writer:
            writer.append(events.select(rows))
    task = tasks.Task("cwola", "SR", None, None, None, 0)
    names = {generator: weak_supervision.method_name(task, path) for generator, path in paths.items()}
    assert names == {"diffusion": "cwola", "flow_matching": "cwola-flow_matching"}
    assert {plotting.generator_of(name) for name in names.values()} == {"diffusion", "flow_matching"}
    assert plotting.generator_of("idealized") is None
    generated = evaluation._by_generator([paths["flow_matching"], paths["diffusion"]])
    histograms = plotting.feature_histograms(generated, processed_file, progress=False)
    assert plotting.generated_samples(histograms["mjj"]) == ["flow_matching", "diffusion"]
    assert histograms["mjj"]["flow_matching"].sum() > 0 and plotting.wasserstein(histograms["mjj"], "diffusion") > 0
    figure = plotting.feature_figure(histograms)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    colours = {label: matplotlib.colors.to_hex(handle[0].get_color()) for handle, label in zip(handles, labels)}
    red, blue = matplotlib.colors.to_hex("tab:red"), matplotlib.colors.to_hex("tab:blue")
    assert colours == {"reference": "#000000", "flow_matching": blue, "diffusion": red}, colours
    with pytest.raises(evaluation.InputError, match="one file per generator"):
        evaluation._by_generator([paths["diffusion"], paths["diffusion"]])
