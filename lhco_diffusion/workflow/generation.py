"""Whole dijet events from a trained generator, diffusion or flow matching (DESIGN.md, Sampling; Drapes).

    generate_events(model, stats, mjj, npart, solver, num_steps, seed)
        jets given mjj -> multiplicities N rounded into [1, P] -> masks -> the particles of both
        jets, one batched network call per step and bucket -> physical units (``data.transforms``)
    partially_diffuse_events(model, stats, events, mjj, t_star, npart, solver, num_steps, seed)
        the same chain started from existing events noised to t_star (partial diffusion):
        jets re-diffused under the new mjj, particles re-diffused given the new jets
    particles_given_jets(model, stats, events, npart, solver, num_steps, seed)
        the particle model alone: new particles for existing events' own jets and mjj, which
        judges it apart from the jet model

Solvers and step counts are those of the model's process: ``solvers.sampling`` for diffusion,
``solvers.flow`` for flow matching (``sampling.solver``, ``sampling.num_steps``); the networks
are the models' EMA copies. Generated particles are sorted by pT within each jet, as prepared data are, and new events are rotated about the beam
by a uniformly random angle (the models work in each event's frame, see ``data.transforms``);
under ``transforms.jet_eta: gap`` or ``selection`` they are also reflected in eta (eta -> -eta)
with probability 1/2, and partially diffused events keep their own orientation.

With ``bucket_size`` the particle sampler runs over multiplicity buckets
(``data.dataset.multiplicity_buckets``): events ordered by their longest jet, ``bucket_size`` at
a time, each bucket cut to its own padded width, then put back in event order. The noise of
all events is drawn first at full width and sliced, and padding never reaches a real particle,
so an event comes out the same (to float rounding) in any bucket. ``jit_compile`` compiles
the step loops with XLA (``sampling.jit_compile``).

In data the dijet mass of the two jets is mjj exactly; a generator meets its mjj condition only
to the accuracy it learned (3 % on the Pythia sample at P=30), and the classifiers, which see
the jets' pT and mass in units of mjj, can tell events apart by it. With ``exact_mjj``
(``sampling.exact_mjj``) both jets' pT and mass are scaled by one factor per event so that the
dijet mass is the condition (``data.kinematics.scaled_to_dijet_mass``); the particles are
relative to their jet and do not change.

Data events passed the selection of ``data.cluster`` (leading jet pT above
``data.min_leading_jet_pt``); generated ones need not (7 % of them did not on the Pythia
sample at P=30). ``selected_events`` draws each failing event again at its mjj with new noise,
which samples the generator's density restricted to the selected phase space, as the data are
(``sampling.apply_data_selection``).
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import tensorflow as tf

from lhco_diffusion.data import dataset, kinematics, processed, transforms
from lhco_diffusion.data.layout import N_INDEX
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.models.generator import GenerativeModel
from lhco_diffusion.solvers import flow, sampling

MAX_REDRAWS = 50  # rounds of selected_events; at a 7 % failure rate 3 leave 1 event in 3000 to redraw


class SelectionWarning(UserWarning):
    """Some generated events still fail the data's selection after every redraw."""


def solvers(model: GenerativeModel, solver: str):
    """The ``solvers`` module of the model's process (``sampling`` for diffusion, ``flow`` for flow
    matching) as (sample, noised, denoise), after checking that ``solver`` is one of its solvers."""
    module = flow if model.process == "flow_matching" else sampling
    if solver not in module.SOLVERS:
        raise InputError(f"sampling.solver '{solver}' does not apply to the {model.process} generator; "
                         f"choose one of {', '.join(module.SOLVERS)}")
    if module is flow:
        return flow.sample, functools.partial(flow.noised, sigma_min=model.sigma_min), flow.denoise
    return sampling.sample, sampling.noised, sampling.denoise


def generate_events(model: GenerativeModel, stats: transforms.Stats, mjj: np.ndarray, npart: int,
                    solver: str, num_steps: int, seed, bucket_size: int | None = None,
                    jit_compile: bool = False, exact_mjj: bool = False) -> Events:
    """Events (label 0) for the given mjj (B,) [GeV], P = ``npart`` slots per jet.

    ``seed`` (an int or a sequence of ints, as numpy takes it) fixes the initial noise;
    ``bucket_size``, ``jit_compile`` and ``exact_mjj``: see the module docstring.
    """
    condition = transforms.condition(stats, mjj)
    rng = np.random.default_rng(seed)
    sample, _, _ = solvers(model, solver)
    jet_velocity, _ = model.sampling_velocities
    jet_noise = rng.standard_normal((len(mjj), 2, stats.n_jet_features)).astype(np.float32)
    jets = sample(jet_velocity, jet_noise, num_steps, solver, args=(tf.constant(condition),),
                  jit_compile=jit_compile).numpy()
    mask = multiplicity_mask(stats, jets, npart)
    particle_noise = rng.standard_normal((len(mjj), 2, npart, 3)).astype(np.float32)
    particles = _sampled_particles(model, solver, num_steps, particle_noise, jets, condition, mask, bucket_size,
                                   jit_compile)
    event_azimuth = rng.uniform(-np.pi, np.pi, len(mjj))  # events are symmetric about the beam
    event_mirror = transforms.random_mirror(stats, rng, len(mjj))  # and under eta -> -eta
    return _physical(stats, particles, jets, mjj, mask, event_azimuth, event_mirror, exact_mjj)


def particles_given_jets(model: GenerativeModel, stats: transforms.Stats, events: Events, npart: int,
                         solver: str, num_steps: int, seed, bucket_size: int | None = None,
                         jit_compile: bool = False) -> Events:
    """``events`` (B events, any P) with new particles generated for their own jets, multiplicities
    and mjj, P = ``npart`` slots per jet: the jets stay those given, so the result measures the
    particle model alone. ``seed`` fixes the noise; ``bucket_size``, ``jit_compile``: see the
    module docstring."""
    inputs = transforms.to_model(stats, processed.resize(events, npart))
    noise = np.random.default_rng(seed).standard_normal(inputs.particles.shape).astype(np.float32)
    particles = _sampled_particles(model, solver, num_steps, noise, inputs.jets, inputs.condition, inputs.mask,
                                   bucket_size, jit_compile)
    return _physical(stats, particles, inputs.jets, events.mjj, inputs.mask, transforms.azimuth(events.jets),
                     transforms.mirrored(stats, events.jets), exact_mjj=False)


def _sampled_particles(model: GenerativeModel, solver: str, num_steps: int, noise: np.ndarray, jets: np.ndarray,
                       condition: np.ndarray, mask: np.ndarray, bucket_size: int | None,
                       jit_compile: bool) -> np.ndarray:
    """Particles (B, 2, P, 3) in model space integrated from ``noise`` given model-space ``jets``
    (B, 2, F), ``condition`` (B, 1) and ``mask`` (B, 2, P)."""
    sample, _, _ = solvers(model, solver)
    _, particle_velocity = model.sampling_velocities

    def integrate(x, bucket_mask, args):
        return sample(particle_velocity, x, num_steps, solver, mask=bucket_mask, args=args, jit_compile=jit_compile)

    return particles_in_buckets(integrate, noise, jets, condition, mask, bucket_size)


def selected_events(make, n: int, seed, min_leading_jet_pt: float, max_redraws: int = MAX_REDRAWS) -> Events:
    """n events from ``make(rows, seed)`` -> Events of ``rows`` (an index array into 0..n-1), every
    event that fails the data's selection (``passes_selection``) drawn again with the seed
    (*seed, k) in round k, up to ``max_redraws`` rounds; any still failing then are kept, with a
    ``SelectionWarning``."""
    events = make(np.arange(n), seed)
    for redraw in range(1, max_redraws + 1):
        failing = np.flatnonzero(~passes_selection(events, min_leading_jet_pt))
        if len(failing) == 0:
            return events
        events.assign(failing, make(failing, (*np.ravel(seed), redraw)))
    failing = np.count_nonzero(~passes_selection(events, min_leading_jet_pt))
    if failing:
        warnings.warn(f"{failing} of {n} generated events still have no jet above {min_leading_jet_pt:g} GeV "
                      f"after {max_redraws} redraws; they are kept", SelectionWarning, stacklevel=2)
    return events


def passes_selection(events: Events, min_leading_jet_pt: float) -> np.ndarray:
    """(B,) bool: the leading jet's pT is above ``min_leading_jet_pt`` [GeV], as in ``data.cluster``."""
    return events.jets[..., 0].max(axis=1) > min_leading_jet_pt


def particles_in_buckets(integrate, x, jets: np.ndarray, condition: np.ndarray, mask: np.ndarray,
                         bucket_size: int | None) -> np.ndarray:
    """Run a particle sampler bucket by bucket and return its result in event order.

    integrate(x (b, 2, w, 3), mask (b, 2, w, 1), args=(jets, condition, mask (b, 2, w))) -> (b, 2, w, 3)
    is called once per bucket of ``dataset.multiplicity_buckets(mask, bucket_size)`` (or once
    for all events at full width when ``bucket_size`` is None) on the bucket's slice of the
    state x (B, 2, P, 3), jets (B, 2, F), condition (B, 1) and mask (B, 2, P).
    Returns (B, 2, P, 3) float32, zero beyond each bucket's width.
    """
    buckets = (dataset.multiplicity_buckets(mask, bucket_size) if bucket_size
               else [(np.arange(len(mask)), mask.shape[-1])])
    result = np.zeros_like(np.asarray(x, np.float32))
    for rows, width in buckets:
        bucket_mask = mask[rows, :, :width]
        args = (tf.constant(jets[rows]), tf.constant(condition[rows]), tf.constant(bucket_mask))
        result[rows, :, :width] = integrate(x[rows, :, :width], bucket_mask[..., None], args)
    return result


def partially_diffuse_events(model: GenerativeModel, stats: transforms.Stats, events: Events, mjj: np.ndarray,
                             t_star: float, npart: int, solver: str, num_steps: int, seed,
                             bucket_size: int | None = None, jit_compile: bool = False,
                             exact_mjj: bool = False) -> Events:
    """Templates from existing ``events`` re-diffused from ``t_star`` under new ``mjj`` (B,) [GeV].

    The jets are noised to ``t_star`` and denoised conditioned on the new mjj; the particles are
    noised to ``t_star`` and denoised conditioned on the new jets. Each jet keeps its number of
    particles (the new jets' N is set to it), so the point clouds keep their size; at small
    ``t_star`` the output approaches the input, at ``t_star`` = 1 it is a fresh generation. The
    events keep their azimuth and eta orientation (the model works in each event's own frame).
    ``num_steps`` counts steps over the whole [0, 1] interval (``sampling.steps_below``,
    ``flow.steps_above``); ``bucket_size``, ``jit_compile`` and ``exact_mjj``: see the module docstring.
    """
    inputs = transforms.to_model(stats, processed.resize(events, npart))
    condition = transforms.condition(stats, mjj)
    jet_seed, particle_seed = np.random.default_rng(seed).integers(2**32, size=2)
    _, noised, denoise = solvers(model, solver)
    jet_velocity, particle_velocity = model.sampling_velocities
    jets = denoise(jet_velocity, noised(inputs.jets, t_star, jet_seed), t_star, num_steps, solver,
                   args=(tf.constant(condition),), jit_compile=jit_compile)
    jets = _with_multiplicity(stats, jets.numpy(), inputs.mask)

    def integrate(x, bucket_mask, args):
        return denoise(particle_velocity, x, t_star, num_steps, solver, mask=bucket_mask, args=args,
                                jit_compile=jit_compile)

    particles_t = noised(inputs.particles, t_star, particle_seed).numpy()
    particles = particles_in_buckets(integrate, particles_t, jets, condition, inputs.mask, bucket_size)
    return _physical(stats, particles, jets, mjj, inputs.mask, transforms.azimuth(events.jets),
                     transforms.mirrored(stats, events.jets), exact_mjj)


def multiplicity_mask(stats: transforms.Stats, jets: np.ndarray, npart: int) -> np.ndarray:
    """(B, 2, P) float32 mask of the first N slots, N = the jets' (B, 2, F) model-space N rounded
    and clipped into [1, P]."""
    n = jets[..., N_INDEX] * stats.jet_std[..., N_INDEX] + stats.jet_mean[..., N_INDEX]
    n = np.clip(np.rint(n), 1, npart)
    return (np.arange(npart) < n[..., None]).astype(np.float32)


def _with_multiplicity(stats: transforms.Stats, jets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``jets`` (B, 2, F) with their model-space N set to the particle count of ``mask``."""
    jets = jets.copy()
    jets[..., N_INDEX] = (mask.sum(axis=-1) - stats.jet_mean[..., N_INDEX]) / stats.jet_std[..., N_INDEX]
    return jets


def _physical(stats, particles, jets, mjj, mask, event_azimuth, event_mirror, exact_mjj) -> Events:
    events = transforms.to_physical(stats, particles, jets, mjj, mask, event_azimuth, event_mirror)
    if exact_mjj:
        events.jets = kinematics.scaled_to_dijet_mass(events.jets, events.mjj)
    order = np.argsort(-events.particles[..., 0], axis=-1, kind="stable")  # padding (pT 0) stays last
    events.particles = np.take_along_axis(events.particles, order[..., None], axis=2)
    return events
