"""Throughput of event log-likelihoods (probability-flow ODE), padded to P and bucketed.

    python benchmarks/likelihood.py [--events 2] [--settings 30:hutchinson 279:hutchinson 30:exact] \
        [--config configs/lhco_279.yaml]

Times ``likelihood.event_log_likelihood`` with the diffusion networks of ``--config``: by
default the paper's (configs/lhco_279.yaml); a smaller configuration's networks make the P=279
rows affordable on a CPU, where one paper-size event padded to P takes many minutes. The
networks are untrained (the cost of one network call does not depend on the weights, the number
of RK45 steps does: the figures indicate the cost per step rather than predict a trained
model's), at the configuration's tolerances (the paper's: atol 5e-5, rtol 1e-4). The jet model
always uses the exact divergence; the particle model the exact one or Hutchinson's estimate as
given. Events are LHCO-like: multiplicities
60 +- 25 clipped to [1, P] (the transform statistics of benchmarks/sample.py), particles with
pT_rel ~ 1/N and angles of a few tenths. One untimed call with loose tolerances traces the
graphs first. Each setting runs with the batch padded to P and with multiplicity buckets
(``event_log_likelihood(..., bucketing=True)``: the batch cut to its longest jet rounded up to
16 slots; with more events than ``--batch-size`` also grouped by multiplicity). Prints events/s
and the network evaluations (jets + particles) per call, before and after bucketing.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lhco_diffusion import config as config_module  # noqa: E402
from lhco_diffusion.solvers import likelihood as ode  # noqa: E402
from lhco_diffusion.workflow import likelihood  # noqa: E402
from lhco_diffusion.data.processed import Events  # noqa: E402
from lhco_diffusion.models.diffusion import DiffusionModel  # noqa: E402
from sample import PAPER_CONFIG, lhco_like_stats  # noqa: E402  (benchmarks/sample.py)


def lhco_like_events(n_events: int, npart: int, seed: int = 0) -> Events:
    """Physical dijet events at mjj = 3.5 TeV with N = 60 +- 25 constituents clipped to [1, P]."""
    rng = np.random.default_rng(seed)
    n_constituents = np.clip(np.rint(rng.normal(60.0, 25.0, (n_events, 2))), 1, npart).astype(int)
    real = np.arange(npart) < n_constituents[..., None]
    weights = rng.exponential(1.0, (n_events, 2, npart)) * real
    pt_rel = -np.sort(-weights / weights.sum(axis=-1, keepdims=True), axis=-1)  # pT-ordered, sums to 1
    angles = rng.normal(0.0, 0.2, (n_events, 2, npart, 2))
    particles = np.concatenate([pt_rel[..., None], angles], axis=-1) * real[..., None]
    jets = np.stack([rng.normal(1700.0, 100.0, (n_events, 2)), rng.normal(0.0, 1.0, (n_events, 2)),
                     rng.uniform(-np.pi, np.pi, (n_events, 2)), rng.uniform(50.0, 600.0, (n_events, 2)),
                     n_constituents], axis=-1)
    return Events(particles, jets, np.full(n_events, 3500.0), np.zeros(n_events))


@contextlib.contextmanager
def counted_evaluations():
    """Count the right-hand-side evaluations of every ODE solve inside the block."""
    counts, solve = [], ode.solve_ivp

    def counting(*args, **kwargs):
        solution = solve(*args, **kwargs)
        counts.append(solution.nfev)
        return solution

    ode.solve_ivp = counting
    try:
        yield counts
    finally:
        ode.solve_ivp = solve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2, help="events per timed call")
    parser.add_argument("--batch-size", type=int, default=256, help="events per ODE solve")
    parser.add_argument("--settings", nargs="+", default=["30:hutchinson", "279:hutchinson", "30:exact"],
                        help="P:divergence of the particle model, divergence exact or hutchinson")
    parser.add_argument("--config", type=Path, default=PAPER_CONFIG, help="whose jet_model/particle_model to time")
    args = parser.parse_args()
    config = config_module.load(args.config)
    tf.keras.utils.set_random_seed(0)  # the untrained weights, and so the number of RK45 steps
    model = DiffusionModel(config.jet_model, config.particle_model, config.training)
    stats = lhco_like_stats(config)
    settings = config.likelihood
    print(f"networks of {args.config.name}, {args.events} events per call, atol {settings.atol}, "
          f"rtol {settings.rtol}, {os.cpu_count()} CPU threads, TensorFlow {tf.__version__}")
    for setting in args.settings:
        npart, divergence = setting.split(":")
        events = lhco_like_events(args.events, int(npart))
        exact = divergence == "exact"
        for bucketing in (False, True):
            options = dict(batch_size=args.batch_size, bucketing=bucketing)
            likelihood.event_log_likelihood(model, stats, events, exact, atol=1.0, rtol=1.0, **options)  # trace
            with counted_evaluations() as counts:
                start = time.perf_counter()
                likelihood.event_log_likelihood(model, stats, events, exact, settings.atol, settings.rtol, **options)
                seconds = time.perf_counter() - start
            batching = "bucketed" if bucketing else "padded to P"
            print(f"P={int(npart):4d}  particles {divergence:10s} {batching:11s} ({sum(counts[::2]):4d} + "
                  f"{sum(counts[1::2]):4d} network calls)  {args.events / seconds:8.3f} events/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
