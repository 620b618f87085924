"""Event log-likelihoods and anomaly scores under a trained generator (density paper, eq. 7).

    results = event_log_likelihood(model, stats, events, exact=False)
    write_likelihoods(output, checkpoint, config, input_path, exact, batch_size, limit, seed)

The ODE and its divergence are ``solvers.likelihood``'s; here the events are put in model
space, the jets and each jet's particles are solved as their own densities, and the result is
written per event.
"""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from lhco_diffusion.config import Config, LikelihoodConfig
from lhco_diffusion.data import dataset, processed, transforms
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output, refuse_existing
from lhco_diffusion.solvers.likelihood import anomaly_score, log_likelihood
from lhco_diffusion.workflow.checkpoints import Checkpoint

OUTPUTS = ("log_p_jets", "log_p_particles", "n_constituents", "score")


def event_log_likelihood(model, stats: transforms.Stats, events: Events, exact: bool,
                         atol: float = LikelihoodConfig.atol, rtol: float = LikelihoodConfig.rtol, seed=0,
                         batch_size: int = LikelihoodConfig.batch_size, bucketing: bool = True
                         ) -> dict[str, np.ndarray]:
    """Log-likelihoods and anomaly scores of physical ``events`` (N) under a trained generator
    (diffusion or flow matching: ``model.process`` picks the ODE).

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
    the score) plus, per event, -log(1 - pT_rel) for every particle and -log pT - log m for every jet
    (with ``transforms.jet_eta: gap`` also -log B(mjj) for the scaled eta separation and -log 2
    for the reflection onto a positive one; with ``selection`` the separation's bound and the
    logit's derivative instead of B; with ``transforms.particle_angles: asinh`` the radial map's,
    log(asinh(r / 0.01) / (r sqrt(r^2 + 0.01^2))) per particle at distance r from its centre).
    The networks are the models' EMA copies (``model.sampling_velocities``).

    exact: exact divergence for the particle model too (``batch`` x 3P x 3P per jet: fine for
    P ~ 30, use Hutchinson for P = 279); the jet model (10 dimensions) always uses it.
    atol, rtol: RK45 tolerances. seed (int or sequence of ints): Hutchinson probes; the batch
    starting at event i draws from (seed, i), so Hutchinson values change with P and the batching.
    Events are solved ``batch_size`` at a time; every event is held to the tolerances, but the
    RK45 steps are shared, so values move with the batching within the ODE's global error
    (~1e-4 to 1e-3 relative at the defaults). With ``bucketing`` the batches are multiplicity
    buckets (``data.dataset.multiplicity_buckets``: events ordered by their longest jet, each
    batch cut to its padded width, results in event order), which only saves network work on
    padding; the Hutchinson seed is then (seed, index of the bucket x batch_size). Every jet
    needs at least one particle (``InputError``
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
    batches = (dataset.multiplicity_buckets(events.mask, batch_size) if bucketing else
               [(np.arange(start, min(start + batch_size, len(events))), events.npart)
                for start in range(0, len(events), batch_size)])
    for number, (rows, width) in enumerate(batches):
        start = number * batch_size
        inputs = transforms.to_model(stats, events.select(rows))
        condition = tf.constant(inputs.condition)
        log_p_jets[rows] = log_likelihood(jet_velocity, inputs.jets, exact=True, atol=atol, rtol=rtol,
                                          args=(condition,), process=model.process)
        particles, mask = inputs.particles[:, :, :width], inputs.mask[:, :, :width]
        per_jet = particles.reshape(-1, *particles.shape[2:])  # (2B, w, 3)
        log_p = log_likelihood(_per_jet_velocity, per_jet, mask=mask.reshape(*per_jet.shape[:2], 1),
                               exact=exact, atol=atol, rtol=rtol, seed=[*np.atleast_1d(seed), start],
                               args=(particle_velocity, tf.constant(inputs.jets), condition, tf.constant(mask)),
                               process=model.process)
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


def write_likelihoods(output: str | os.PathLike, checkpoint: Checkpoint, config: Config,
                      input_path: str | os.PathLike, exact: bool, batch_size: int, limit: int | None = None,
                      seed: int = 0, overwrite: bool = False, progress: bool = True, attrs: dict | None = None) -> int:
    """Write ``OUTPUTS``, mjj and label of the first ``limit`` events (default all) of the
    processed file ``input_path`` to ``output`` (HDF5, atomically; an existing one only with
    ``overwrite``); returns the number of events.

    Events are read ``batch_size`` at a time (P from the checkpoint's ``data.npart``).
    """
    settings = config.likelihood
    output = Path(output)
    n = processed.count(input_path)
    n = n if limit is None else min(n, limit)
    if n < 1 or batch_size < 1:
        raise InputError(f"nothing to do: {n} events from {input_path} with batch size {batch_size}")
    refuse_existing(output, overwrite)
    results, mjj, label = [], [], []
    with tqdm(total=n, unit="ev", desc="log-likelihood", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            events = processed.load(input_path, start, min(start + batch_size, n), npart=config.data.npart)
            results.append(event_log_likelihood(checkpoint.model, checkpoint.stats, events, exact, settings.atol,
                                                settings.rtol, seed=[seed, start], batch_size=batch_size))
            mjj.append(events.mjj)
            label.append(events.label)
            bar.update(len(events))
    with atomic_output(output) as temporary, h5py.File(temporary, "w") as file:
        for name in OUTPUTS:
            file.create_dataset(name, data=np.concatenate([result[name] for result in results]))
        file.create_dataset("mjj", data=np.concatenate(mjj))
        file.create_dataset("label", data=np.concatenate(label))
        file.attrs.update({
            **(attrs or {}), "config": config.to_yaml(), "input": str(input_path),
            "exact": exact, "atol": settings.atol, "rtol": settings.rtol, "seed": seed,
            "batch_size": batch_size, "npart": config.data.npart,
            "units": "nats, of the model-space variables (no Jacobian of data.transforms)",
            "code_version": importlib.metadata.version("lhco_diffusion"),
        })
    return n
