"""Whole dijet events from a trained generator, diffusion or flow matching (DESIGN.md, Sampling; Drapes).

    generate_events(model, stats, mjj, npart, solver, num_steps, seed)
        jets given mjj -> multiplicities N rounded into [1, P] -> masks -> the particles of both
        jets in one batched network call per step -> physical units (``data.transforms``)
    partially_diffuse_events(model, stats, events, mjj, t_star, npart, solver, num_steps, seed)
        the same chain started from existing events noised to t_star (partial diffusion):
        jets re-diffused under the new mjj, particles re-diffused given the new jets

Solvers and step counts are those of the model's process: ``solvers.sampling`` for diffusion,
``solvers.flow`` for flow matching (``sampling.solver``,
``sampling.num_steps``); the networks are the models' EMA copies. Generated particles are
sorted by pT within each jet, as prepared data are, and new events are rotated about the beam
by a uniformly random angle (the models work in each event's frame, see ``data.transforms``).
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from lhco_diffusion.solvers import sampling
from lhco_diffusion.data import processed, transforms
from lhco_diffusion.data.layout import N_INDEX
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.models.generator import GenerativeModel
from lhco_diffusion.solvers import flow



def solvers(model: GenerativeModel, solver: str):
    """(sample, partial_diffusion) of the model's process (``sampling`` for diffusion,
    ``solvers.flow`` for flow matching), after checking that ``solver`` is one of its solvers."""
    module = flow if model.process == "flow_matching" else sampling
    if solver not in module.SOLVERS:
        raise InputError(f"sampling.solver '{solver}' does not apply to the {model.process} generator; "
                         f"choose one of {', '.join(module.SOLVERS)}")
    if module is flow:
        return flow.sample, functools.partial(flow.partial_diffusion, sigma_min=model.sigma_min)
    return sampling.sample, sampling.partial_diffusion


def generate_events(model: GenerativeModel, stats: transforms.Stats, mjj: np.ndarray, npart: int,
                    solver: str, num_steps: int, seed) -> Events:
    """Events (label 0) for the given mjj (B,) [GeV], P = ``npart`` slots per jet.

    ``seed`` (an int or a sequence of ints, as numpy takes it) fixes the initial noise.
    """
    condition = tf.constant(transforms.condition(stats, mjj))
    rng = np.random.default_rng(seed)
    sample, _ = solvers(model, solver)
    jet_velocity, particle_velocity = model.sampling_velocities
    jet_noise = rng.standard_normal((len(mjj), 2, 5)).astype(np.float32)
    jets = sample(jet_velocity, jet_noise, num_steps, solver, args=(condition,))
    mask = multiplicity_mask(stats, jets.numpy(), npart)
    particle_noise = rng.standard_normal((len(mjj), 2, npart, 3)).astype(np.float32)
    particles = sample(particle_velocity, particle_noise, num_steps, solver, mask=mask[..., None],
                       args=(jets, condition, tf.constant(mask)))
    event_azimuth = rng.uniform(-np.pi, np.pi, len(mjj))  # events are symmetric about the beam
    return _physical(stats, particles.numpy(), jets.numpy(), mjj, mask, event_azimuth)


def partially_diffuse_events(model: GenerativeModel, stats: transforms.Stats, events: Events, mjj: np.ndarray,
                             t_star: float, npart: int, solver: str, num_steps: int, seed) -> Events:
    """Templates from existing ``events`` re-diffused from ``t_star`` under new ``mjj`` (B,) [GeV].

    The jets are noised to ``t_star`` and denoised conditioned on the new mjj; the particles are
    noised to ``t_star`` and denoised conditioned on the new jets. Each jet keeps its number of
    particles (the new jets' N is set to it), so the point clouds keep their size; at small
    ``t_star`` the output approaches the input, at ``t_star`` = 1 it is a fresh generation. The
    events keep their azimuth (the model works in each event's own frame).
    ``num_steps`` counts steps over the whole [0, 1] interval (``sampling.steps_below``,
    ``solvers.flow.steps_above``).
    """
    inputs = transforms.to_model(stats, processed.resize(events, npart))
    condition = tf.constant(transforms.condition(stats, mjj))
    jet_seed, particle_seed = np.random.default_rng(seed).integers(2**32, size=2)
    _, partial_diffusion = solvers(model, solver)
    jet_velocity, particle_velocity = model.sampling_velocities
    jets = partial_diffusion(jet_velocity, inputs.jets, t_star, num_steps, solver, seed=jet_seed, args=(condition,))
    jets = tf.constant(_with_multiplicity(stats, jets.numpy(), inputs.mask))
    particles = partial_diffusion(particle_velocity, inputs.particles, t_star, num_steps, solver,
                                  mask=inputs.mask[..., None], seed=particle_seed,
                                  args=(jets, condition, tf.constant(inputs.mask)))
    return _physical(stats, particles.numpy(), jets.numpy(), mjj, inputs.mask, transforms.azimuth(events.jets))


def multiplicity_mask(stats: transforms.Stats, jets: np.ndarray, npart: int) -> np.ndarray:
    """(B, 2, P) float32 mask of the first N slots, N = the jets' (B, 2, 5) model-space N rounded
    and clipped into [1, P]."""
    n = jets[..., N_INDEX] * stats.jet_std[N_INDEX] + stats.jet_mean[N_INDEX]
    n = np.clip(np.rint(n), 1, npart)
    return (np.arange(npart) < n[..., None]).astype(np.float32)


def _with_multiplicity(stats: transforms.Stats, jets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``jets`` (B, 2, 5) with their model-space N set to the particle count of ``mask``."""
    jets = jets.copy()
    jets[..., N_INDEX] = (mask.sum(axis=-1) - stats.jet_mean[N_INDEX]) / stats.jet_std[N_INDEX]
    return jets


def _physical(stats, particles, jets, mjj, mask, event_azimuth) -> Events:
    events = transforms.to_physical(stats, particles, jets, mjj, mask, event_azimuth)
    order = np.argsort(-events.particles[..., 0], axis=-1, kind="stable")  # padding (pT 0) stays last
    events.particles = np.take_along_axis(events.particles, order[..., None], axis=2)
    return events
