"""Log-likelihoods from the probability-flow ODE, and the per-event anomaly score
(DESIGN.md, Likelihood; density paper, eq. 7).

    dx/dt = f(t) x - g^2(t) score / 2,   score = -eps_hat / sigma,   eps_hat = sigma x + alpha v
    log p_0(x) = log N(x_1; 0, I) + integral_0^1 div(dx/dt) dt

For a flow-matching field (``process="flow_matching"``) dx/dt = v itself, data at t = 1, noise at
t = 0: log p_1(x) = log N(x_0; 0, I) + integral_1^0 div v dt, by the same solver.

``v_fn(x, t, *args)`` is any v-prediction with the signature of ``sampling.sample`` (x (batch, ...),
t (batch, 1), conditioning tensors ``args``); it must treat events independently (no cross-talk
along the batch axis).
The whole batch is one ``scipy.integrate.solve_ivp`` (RK45) system: the real (unmasked) entries
plus one log-det accumulator per event, so padding changes neither the state nor the step sizes.
The step-size control holds every event, and its log-det, to atol and rtol (``_EventwiseRK45``);
the other events of a batch only make an event's steps finer. The integration starts at t = 0
itself: the schedule stops at log-SNR 20, where f and g^2/sigma are finite, so no cut-off time
is needed. The network runs in
float32; the ODE right-hand side is assembled in float64.

    log_p = log_likelihood(v_fn, particles, mask=mask[..., None], exact=False)    # (batch,)
    score = anomaly_score(log_p_jets, log_p_particles, n_constituents)          # (batch,)

``workflow.likelihood`` applies this to the trained generators' events.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.integrate import RK45, solve_ivp

from lhco_diffusion.solvers import schedule


def log_likelihood(v_fn, x, mask=None, exact: bool = True, atol: float = 5.0e-5, rtol: float = 1.0e-4,
                   seed: int = 0, args=(), process: str = "diffusion") -> np.ndarray:
    """log p(x) in nats of each event of x (batch, ...) at the data end of the model ``v_fn``.

    process: how ``v_fn`` defines the ODE (``PROCESSES``): "diffusion", a v-prediction whose
    probability flow runs from data at t = 0 to noise at t = 1; "flow_matching", dx/dt itself,
    integrated from data at t = 1 back to noise at t = 0. Either way log p(x) = log N(x_noise; 0, I)
    + the integral of div(dx/dt) from the data end to the noise end.

    mask: (batch, ..., 1) 1 for real entries, 0 for padding; padded entries are not dimensions
    (they enter neither the prior's dimension count nor the divergence). None means all real.
    exact: trace of the Jacobian (batch x D x D memory, for jets and small point clouds);
    otherwise Hutchinson's estimate with one Rademacher probe per entry, fixed for the
    whole solve and drawn from ``seed`` (unbiased; per-event noise ~ the Jacobian's size).
    args: conditioning tensors passed on to every ``v_fn(x, t, *args)`` call.
    Returns (batch,) float64.
    """
    if process not in PROCESSES:
        raise ValueError(f"unknown process '{process}'; valid: {', '.join(PROCESSES)}")
    drift_of, time_span = PROCESSES[process]
    x = np.asarray(x, np.float64)
    batch, shape = x.shape[0], x.shape
    mask = np.ones(shape[:-1] + (1,)) if mask is None else np.asarray(mask, np.float64)
    if mask.ndim != x.ndim:
        raise ValueError(f"mask must have shape (batch, ..., 1) for x of shape {shape}, not {mask.shape}")
    mask = np.broadcast_to(mask, shape)
    real = mask > 0  # the ODE state holds only these entries: padding cannot steer the step size
    dimensions = real.reshape(batch, -1).sum(axis=1)
    probe = None if exact else _rademacher(shape, seed) * mask
    mask_tensor = tf.constant(mask, tf.float32)

    def padded(values):
        full = np.zeros(shape)
        full[real] = values
        return full

    def derivative(t, state):
        x_t = padded(state[:-batch])
        velocity, divergence = _velocity_divergence(v_fn, x_t, t, mask_tensor, probe, tuple(args))
        drift, drift_divergence = drift_of(x_t, velocity, divergence, dimensions, t)
        return np.concatenate([drift[real], drift_divergence])

    initial = np.concatenate([x[real], np.zeros(batch)])
    event_of_entry = np.nonzero(real.reshape(batch, -1))[0]
    solution = solve_ivp(derivative, time_span, initial, method=_EventwiseRK45, atol=atol, rtol=rtol,
                         event_of_entry=event_of_entry, dimensions=dimensions)
    if not solution.success:
        raise RuntimeError(f"the {process} ODE did not reach t = {time_span[1]:g}: {solution.message}")
    final = solution.y[:, -1]
    x_1 = padded(final[:-batch]).reshape(batch, -1)
    log_prior = -0.5 * np.sum(x_1**2, axis=1) - 0.5 * dimensions * np.log(2.0 * np.pi)
    return log_prior + final[-batch:]


class _EventwiseRK45(RK45):
    """RK45 whose step-size control holds every event to the tolerances, not the batch on average.

    scipy's error norm is the RMS of (error / (atol + rtol |y|)) over the whole state, so an
    event's error is diluted by the other events of the batch, and its log-det accumulator (one
    entry) by its own D state entries. Here each event's norm is the mean of its state's mean
    square and its accumulator's square, and a step is accepted if the worst event's norm is
    below 1: the accuracy of an event's log p no longer falls with the batch size or with D.
    (Overrides ``RungeKutta._estimate_error_norm``; scipy is pinned.)
    """

    def __init__(self, fun, t0, y0, t_bound, event_of_entry, dimensions, **options):
        super().__init__(fun, t0, y0, t_bound, **options)
        self.event_of_entry = event_of_entry  # (n real entries,) the event each state entry belongs to
        self.dimensions = np.maximum(dimensions, 1)  # (batch,)

    def _estimate_error_norm(self, K, h, scale):
        error = self._estimate_error(K, h) / scale
        batch = len(self.dimensions)
        state, accumulator = error[:-batch], error[-batch:]
        state_mean_square = np.bincount(self.event_of_entry, state**2, minlength=batch) / self.dimensions
        return float(np.sqrt(np.max(0.5 * (state_mean_square + accumulator**2))))


def anomaly_score(log_p_jets, log_p_particles, n_constituents) -> np.ndarray:
    """-(log p(jets) + sum_j log p(particles_j | jet_j) / N_j) per event (density paper, eq. 7).

    log_p_jets: (B,) log-likelihood of the two jets; log_p_particles: (B, 2) of each jet's
    particles given the jet; n_constituents: (B, 2) N_j >= 1. Returns (B,): larger = more anomalous.
    """
    log_p_jets = np.asarray(log_p_jets, np.float64)
    log_p_particles = np.asarray(log_p_particles, np.float64)
    n_constituents = np.asarray(n_constituents, np.float64)
    if log_p_particles.shape != n_constituents.shape or log_p_particles.shape != log_p_jets.shape + (2,):
        raise ValueError(
            f"expected log_p_jets (B,), log_p_particles and n_constituents (B, 2); got "
            f"{log_p_jets.shape}, {log_p_particles.shape}, {n_constituents.shape}"
        )
    if np.any(n_constituents < 1):
        raise ValueError("every jet needs n_constituents >= 1")
    return -(log_p_jets + np.sum(log_p_particles / n_constituents, axis=1))


def _probability_flow(x, velocity, divergence, dimensions, t):
    """(dx/dt (batch, ...), div(dx/dt) (batch,)) in float64 from v and div v.

    div(dx/dt) = f D - g^2 div(score) / 2 with div(score) = -(sigma D + alpha div v) / sigma,
    D the number of real entries."""
    f, g2 = (float(value) for value in schedule.drift_diffusion(t))
    alpha, sigma = (float(value) for value in schedule.alpha_sigma(t))
    score = -(sigma * x + alpha * velocity) / sigma
    score_divergence = -(sigma * dimensions + alpha * divergence) / sigma
    return f * x - 0.5 * g2 * score, f * dimensions - 0.5 * g2 * score_divergence


def _flow_field(x, velocity, divergence, dimensions, t):
    """(dx/dt, div(dx/dt)) of a flow-matching field: the network output is dx/dt itself."""
    return velocity, divergence


# process -> (the ODE's (dx/dt, div) from the network output, (t at the data end, t at the noise end))
PROCESSES = {"diffusion": (_probability_flow, (0.0, 1.0)), "flow_matching": (_flow_field, (1.0, 0.0))}


def _velocity_divergence(v_fn, x, t, mask, probe, args):
    """(v (batch, ...), div v (batch,)) as float64 numpy, v zero in padded entries."""
    x = tf.constant(x, tf.float32)
    t = tf.fill([x.shape[0], 1], tf.constant(t, tf.float32))
    if probe is None:
        velocity, divergence = _exact_divergence(v_fn, x, t, mask, args)
    else:
        velocity, divergence = _hutchinson_divergence(v_fn, x, t, mask, tf.constant(probe, tf.float32), args)
    return velocity.numpy().astype(np.float64), divergence.numpy().astype(np.float64)


@tf.function(reduce_retracing=True)
def _exact_divergence(v_fn, x, t, mask, args):
    """Trace of each event's Jacobian dv/dx over real entries (masked rows are zero)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        velocity = v_fn(x, t, *args) * mask
        flat = tf.reshape(velocity, (tf.shape(x)[0], -1))
    jacobian = tape.batch_jacobian(flat, x)  # (batch, D, ...)
    jacobian = tf.reshape(jacobian, (tf.shape(x)[0], tf.shape(flat)[1], tf.shape(flat)[1]))
    return velocity, tf.linalg.trace(jacobian)


@tf.function(reduce_retracing=True)
def _hutchinson_divergence(v_fn, x, t, mask, probe, args):
    """z^T (dv/dx) z per event, z = probe (Rademacher, zero in padded entries)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        velocity = v_fn(x, t, *args) * mask
        projection = tf.reduce_sum(velocity * probe)
    probe_jacobian = tape.gradient(projection, x)
    return velocity, tf.reduce_sum(tf.reshape(probe_jacobian * probe, (tf.shape(x)[0], -1)), axis=1)


def _rademacher(shape, seed: int) -> np.ndarray:
    """+-1 with equal probability, float64 of ``shape``."""
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=shape)
