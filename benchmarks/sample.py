"""Generation throughput of full events (jets, then the particles of both jets) with paper-size models.

    python benchmarks/sample.py [--events 16] [--npart 279 30]

Times ``generation.generate_events`` with the networks of configs/lhco_279.yaml (untrained:
the cost does not depend on the weights) for the paper's sampler, "ddim2" with 512 steps, and
for "dpm2" with 64 steps, after an untimed 2-step call that traces the graphs (the timed call
may retrace the step loop once for its longer time grid, a few seconds against minutes). The transform
statistics put the multiplicity at 60 +- 25 constituents (clipped to [1, P]), like R = 1.0 jets
of the LHCO data. Prints events/s and network evaluations per event batch.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lhco_diffusion import config as config_module  # noqa: E402
from lhco_diffusion.solvers import sampling  # noqa: E402
from lhco_diffusion.workflow import generation
from lhco_diffusion.data.transforms import Stats  # noqa: E402
from lhco_diffusion.models.diffusion import DiffusionModel  # noqa: E402

PAPER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lhco_279.yaml"
SETTINGS = (("ddim2", 512), ("dpm2", 64))


def lhco_like_stats(config) -> Stats:
    """Transform statistics with LHCO-like scales: N = 60 +- 25 constituents."""
    return Stats(jet_mean=[-0.7, 0.0, 0.0, -2.5, 60.0], jet_std=[0.1, 1.0, 1.8, 0.6, 25.0],
                 particle_mean=[-0.05, 0.0, 0.0], particle_std=[0.1, 0.2, 0.2],
                 log_mjj_min=float(np.log(config.data.sideband[0])),
                 log_mjj_max=float(np.log(config.data.sideband[1])), pt_rel_epsilon=1e-6)


def events_per_second(model, stats, npart: int, n_events: int, solver: str, num_steps: int) -> float:
    mjj = np.full(n_events, 3500.0)
    with np.errstate(all="ignore"):  # 2 steps of an untrained model overflow; only tracing matters
        generation.generate_events(model, stats, mjj, npart, solver, 2, seed=0)
    start = time.perf_counter()
    generation.generate_events(model, stats, mjj, npart, solver, num_steps, seed=1)
    return n_events / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=16, help="events per timed generate_events call")
    parser.add_argument("--npart", type=int, nargs="+", default=[279, 30])
    args = parser.parse_args()
    config = config_module.load(PAPER_CONFIG)
    model = DiffusionModel(config.jet_model, config.particle_model, config.training)
    stats = lhco_like_stats(config)
    print(f"paper-size networks ({PAPER_CONFIG.name}), {args.events} events per call, "
          f"{os.cpu_count()} CPU threads, TensorFlow {tf.__version__}")
    for npart in args.npart:
        for solver, num_steps in SETTINGS:
            rate = events_per_second(model, stats, npart, args.events, solver, num_steps)
            calls = 2 * sampling.evaluations(solver, num_steps)  # jet and particle network
            print(f"P={npart:4d}  {solver:5s} T={num_steps:3d} ({calls:4d} network calls)  {rate:8.2f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
