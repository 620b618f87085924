"""Log-likelihoods from the probability-flow ODE, and the per-event anomaly score
(DESIGN.md, Likelihood; density paper, eq. 7).

    dx/dt = f(t) x - g^2(t) score / 2,   score = -eps_hat / sigma,   eps_hat = sigma x + alpha v
    log p_0(x) = log N(x_1; 0, I) + integral_0^1 div(dx/dt) dt

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

For the trained diffusion models, ``event_log_likelihood(model, stats, events, ...)`` gives
log p(jets | mjj), log p(particles_j | jet_j, mjj) and the score of physical ``Events``, and

    python -m lhco_diffusion.likelihood --config FILE --checkpoint RUN/checkpoints/best \
        --input FILE.h5 --output FILE.h5 [--exact | --hutchinson] [--batch-size B] [--limit N]

writes them for a processed file.
"""
from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
from scipy.integrate import RK45, solve_ivp
from tqdm import tqdm

from lhco_diffusion import checkpoints, cli
from lhco_diffusion.config import LikelihoodConfig
from lhco_diffusion.data import processed, transforms
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output
from lhco_diffusion.models import schedule


def log_likelihood(v_fn, x, mask=None, exact: bool = True, atol: float = 5.0e-5, rtol: float = 1.0e-4,
                   seed: int = 0, args=()) -> np.ndarray:
    """log p_0(x) in nats of each event of x (batch, ...) under the model ``v_fn``.

    mask: (batch, ..., 1) 1 for real entries, 0 for padding; padded entries are not dimensions
    (they enter neither the prior's dimension count nor the divergence). None means all real.
    exact: trace of the Jacobian (batch x D x D memory, for jets and small point clouds);
    otherwise Hutchinson's estimate with one Rademacher probe per entry, fixed for the
    whole solve and drawn from ``seed`` (unbiased; per-event noise ~ the Jacobian's size).
    args: conditioning tensors passed on to every ``v_fn(x, t, *args)`` call.
    Returns (batch,) float64.
    """
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
        drift, drift_divergence = _probability_flow(x_t, velocity, divergence, dimensions, t)
        return np.concatenate([drift[real], drift_divergence])

    initial = np.concatenate([x[real], np.zeros(batch)])
    event_of_entry = np.nonzero(real.reshape(batch, -1))[0]
    solution = solve_ivp(derivative, (0.0, 1.0), initial, method=_EventwiseRK45, atol=atol, rtol=rtol,
                         event_of_entry=event_of_entry, dimensions=dimensions)
    if not solution.success:
        raise RuntimeError(f"the probability-flow ODE did not reach t = 1: {solution.message}")
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


def event_log_likelihood(model, stats: transforms.Stats, events: Events, exact: bool,
                         atol: float = LikelihoodConfig.atol, rtol: float = LikelihoodConfig.rtol, seed=0,
                         batch_size: int = LikelihoodConfig.batch_size) -> dict[str, np.ndarray]:
    """Log-likelihoods and anomaly scores of physical ``events`` (N) under a trained ``DiffusionModel``.

    Returns numpy arrays, log-likelihoods in nats:
        log_p_jets       (N,)    log p(jets | mjj), the jet model's density of the two jets
        log_p_particles  (N, 2)  log p(particles_j | jet_j, mjj), the particle model's density of
                                 jet j's real particles given that jet's features (padding not counted)
        n_constituents   (N, 2)  real particles per jet (in the P slots of ``events``)
        score            (N,)    anomaly_score(...), density paper eq. 7; larger = more anomalous

    The densities are of the model-space variables of ``data.transforms.to_model`` (standardised
    log(pT/mjj), eta, phi, log(m/mjj), N of the jets; log(1 - pT_rel), deta, dphi of the
    particles), not of the physical ones: the Jacobian of the transforms is NOT included. It would
    add a constant per dimension (-log std; per jet -N_j sum_k log particle_std_k, a constant in
    the score) plus, per event, -log(1 - pT_rel) for every particle and -log pT - log m for every jet.
    The networks are the models' EMA copies (``model.sampling_velocities``).

    exact: exact divergence for the particle model too (``batch`` x 3P x 3P per jet: fine for
    P ~ 30, use Hutchinson for P = 279); the jet model (10 dimensions) always uses it.
    atol, rtol: RK45 tolerances. seed (int or sequence of ints): Hutchinson probes; the batch
    starting at event i draws from (seed, i), so Hutchinson values change with P and the batching.
    Events are solved ``batch_size`` at a time; every event is held to the tolerances, but the
    RK45 steps are shared, so values move with the batching within the ODE's global error
    (~1e-4 to 1e-3 relative at the defaults). Every jet needs at least one particle (``InputError``
    otherwise).
    """
    if batch_size < 1:
        raise InputError(f"the likelihood batch size must be at least 1, not {batch_size}")
    n_constituents = events.mask.sum(axis=-1)
    if np.any(n_constituents < 1):
        raise InputError(f"{np.sum(np.any(n_constituents < 1, axis=1))} events have a jet without particles; "
                         "the per-particle anomaly score needs N >= 1")
    jet_velocity, particle_velocity = model.sampling_velocities
    log_p_jets, log_p_particles = np.zeros(len(events)), np.zeros((len(events), 2))
    for start in range(0, len(events), batch_size):
        rows = slice(start, start + batch_size)
        inputs = transforms.to_model(stats, events.select(rows))
        condition = tf.constant(inputs.condition)
        log_p_jets[rows] = log_likelihood(jet_velocity, inputs.jets, exact=True, atol=atol, rtol=rtol,
                                          args=(condition,))
        jets, mask = tf.constant(inputs.jets), tf.constant(inputs.mask)
        per_jet = inputs.particles.reshape(-1, *inputs.particles.shape[2:])  # (2B, P, 3)
        log_p = log_likelihood(_per_jet_velocity, per_jet, mask=inputs.mask.reshape(*per_jet.shape[:2], 1),
                               exact=exact, atol=atol, rtol=rtol, seed=[*np.atleast_1d(seed), start],
                               args=(particle_velocity, jets, condition, mask))
        log_p_particles[rows] = log_p.reshape(-1, 2)
    return {"log_p_jets": log_p_jets, "log_p_particles": log_p_particles, "n_constituents": n_constituents,
            "score": anomaly_score(log_p_jets, log_p_particles, n_constituents)}


def _per_jet_velocity(particles_t, t, particle_velocity, jets, condition, mask):
    """``particle_velocity`` with one jet per batch row, so the ODE keeps one log-det per jet:
    particles_t (2B, P, 3) and t (2B, 1) of the jets of B events -> v (2B, P, 3); jets (B, 2, 5),
    condition (B, 1) and mask (B, 2, P) are the events' (the model's own conditioning layout)."""
    events_t = tf.reshape(particles_t, tf.concat([[-1, 2], tf.shape(particles_t)[1:]], axis=0))
    velocity = particle_velocity(events_t, t[::2], jets, condition, mask)
    return tf.reshape(velocity, tf.shape(particles_t))


def _probability_flow(x, velocity, divergence, dimensions, t):
    """(dx/dt (batch, ...), div(dx/dt) (batch,)) in float64 from v and div v.

    div(dx/dt) = f D - g^2 div(score) / 2 with div(score) = -(sigma D + alpha div v) / sigma,
    D the number of real entries."""
    f, g2 = (float(value) for value in schedule.drift_diffusion(t))
    alpha, sigma = (float(value) for value in schedule.alpha_sigma(t))
    score = -(sigma * x + alpha * velocity) / sigma
    score_divergence = -(sigma * dimensions + alpha * divergence) / sigma
    return f * x - 0.5 * g2 * score, f * dimensions - 0.5 * g2 * score_divergence


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


# ---------------------------------------------------------------------- python -m lhco_diffusion.likelihood

OUTPUTS = ("log_p_jets", "log_p_particles", "n_constituents", "score")


def main(argv=None) -> int:
    """Write log-likelihoods and anomaly scores of a processed file's events (see the module docstring)."""
    parser = cli.parser("Probability-flow ODE log-likelihoods and anomaly scores of processed events.",
                        overwrite=True)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint directory of train")
    parser.add_argument("--input", type=Path, required=True, help="processed HDF5 file of events")
    parser.add_argument("--output", type=Path, required=True, help="HDF5 file to write")
    divergence = parser.add_mutually_exclusive_group()
    divergence.add_argument("--exact", dest="exact", action="store_true", default=None,
                            help="exact particle divergence (default: likelihood.exact_divergence)")
    divergence.add_argument("--hutchinson", dest="exact", action="store_false",
                            help="Hutchinson estimate with Rademacher probes")
    parser.add_argument("--batch-size", type=int, help="events per ODE solve (default: likelihood.batch_size)")
    parser.add_argument("--limit", type=int, help="only the first N events of the input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Hutchinson probes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return cli.run(lambda: _write_likelihoods(args))


def _write_likelihoods(args) -> None:
    if args.batch_size is not None:
        args.overrides.append(f"likelihood.batch_size={args.batch_size}")
    config = cli.load_config(args)
    settings = config.likelihood
    exact = settings.exact_divergence if args.exact is None else args.exact
    batch_size = settings.batch_size
    cli.check_at_least("--limit", args.limit, 1)
    n = processed.count(args.input)
    n = n if args.limit is None else min(n, args.limit)
    if n < 1:
        raise InputError(f"{args.input} holds no events")
    cli.refuse_existing(args.output, args.overwrite)
    checkpoint = checkpoints.load(args.checkpoint)
    results, mjj, label = [], [], []
    with tqdm(total=n, unit="ev", desc="log-likelihood", disable=args.quiet) as bar:
        for start in range(0, n, batch_size):
            events = processed.load(args.input, start, min(start + batch_size, n), npart=config.data.npart)
            results.append(event_log_likelihood(checkpoint.model, checkpoint.stats, events, exact, settings.atol,
                                                settings.rtol, seed=[args.seed, start], batch_size=batch_size))
            mjj.append(events.mjj)
            label.append(events.label)
            bar.update(len(events))
    with atomic_output(args.output) as temporary, h5py.File(temporary, "w") as file:
        for name in OUTPUTS:
            file.create_dataset(name, data=np.concatenate([result[name] for result in results]))
        file.create_dataset("mjj", data=np.concatenate(mjj))
        file.create_dataset("label", data=np.concatenate(label))
        file.attrs.update({
            "config": config.to_yaml(), "checkpoint": str(args.checkpoint), "input": str(args.input),
            "exact": exact, "atol": settings.atol, "rtol": settings.rtol, "seed": args.seed,
            "batch_size": batch_size, "npart": config.data.npart,
            "units": "nats, of the model-space variables (no Jacobian of data.transforms)",
            "code_version": importlib.metadata.version("lhco_diffusion"), "complete": True,
        })
    print(f"wrote log-likelihoods of {n} events ({'exact' if exact else 'Hutchinson'} divergence) to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
