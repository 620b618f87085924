"""Generation throughput of full events (jets, then the particles of both jets) with paper-size models.

    python benchmarks/sample.py [--events 8] [--fast-events 64] [--npart 279 30]

Times ``generation.generate_events`` with the networks of configs/lhco_279.yaml (untrained:
the cost does not depend on the weights) for

    paper   "ddim2", 512 steps, every event padded to P, no XLA (the paper's sampler);
            after an untimed 2-step call that traces the graphs. The cost is linear in the
            steps, so with ``--paper-steps`` T < 512 it times T steps and scales the rate by
            T / 512 (to keep the measurement short on a shared machine; said in the output)
    fast    "dpm2m" at the step count that matches ddim2@512's accuracy on the analytic
            Gaussian (384, tests/test_sampling.py::test_solver_error_table), multiplicity
            buckets of ``--fast-events`` / 4 events and the XLA-compiled step loop; the same
            call is made twice, the first (printed as warm-up) compiles every bucket shape
    flow matching  the EPiC-FM networks of configs/lhco_279_fm.yaml with the published sampler,
            "midpoint" at 100 steps, with the fast path's buckets and XLA

The transform statistics put the multiplicity at 60 +- 25 constituents (clipped to [1, P]),
like R = 1.0 jets of the LHCO data. Prints events/s, network evaluations per event and the
speed-up of the fast path.
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
from lhco_diffusion.data.transforms import Stats  # noqa: E402
from lhco_diffusion.models.build import build_generator  # noqa: E402
from lhco_diffusion.solvers import flow, sampling  # noqa: E402
from lhco_diffusion.workflow import generation  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER_CONFIG, FLOW_MATCHING_CONFIG = CONFIGS / "lhco_279.yaml", CONFIGS / "lhco_279_fm.yaml"
PAPER = ("ddim2", 512)
FAST = ("dpm2m", 384)  # matches ddim2@512 on the analytic Gaussian (tests/test_sampling.py)
FLOW_MATCHING = ("midpoint", 100)  # the published EPiC-FM LHCO sampler: midpoint, 50 to 100 steps


def lhco_like_stats(config) -> Stats:
    """Transform statistics with LHCO-like scales: N = 60 +- 25 constituents."""
    return Stats(jet_mean=[-0.7, 0.0, 0.0, -2.5, 60.0], jet_std=[0.1, 1.0, 1.8, 0.6, 25.0],
                 particle_mean=[-0.05, 0.0, 0.0], particle_std=[0.1, 0.2, 0.2],
                 log_mjj_min=float(np.log(config.data.sideband[0])),
                 log_mjj_max=float(np.log(config.data.sideband[1])), pt_rel_epsilon=1e-6)


def events_per_second(model, stats, npart: int, n_events: int, solver: str, num_steps: int,
                      bucket_size: int | None = None, jit_compile: bool = False) -> tuple[float, float]:
    """(events/s of the timed call, seconds of the untimed warm-up call)."""
    mjj = np.full(n_events, 3500.0)
    # Without XLA a 2-step call traces everything; with XLA each bucket shape compiles, so the
    # warm-up is the timed call itself. 2 steps of an untrained model overflow; only tracing matters.
    warm_up_steps = num_steps if jit_compile else 2
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        generation.generate_events(model, stats, mjj, npart, solver, warm_up_steps, seed=1,
                                   bucket_size=bucket_size, jit_compile=jit_compile)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        generation.generate_events(model, stats, mjj, npart, solver, num_steps, seed=1,
                                   bucket_size=bucket_size, jit_compile=jit_compile)
    return n_events / (time.perf_counter() - start), warm_up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8, help="events per timed call of the paper's sampler")
    parser.add_argument("--fast-events", type=int, default=64, help="events per timed call of the fast path")
    parser.add_argument("--paper-steps", type=int, default=512, help="steps timed for ddim2 (scaled to 512)")
    parser.add_argument("--npart", type=int, nargs="+", default=[279, 30])
    args = parser.parse_args()
    config = config_module.load(PAPER_CONFIG)
    model = build_generator(config)
    flow_matching_model = build_generator(config_module.load(FLOW_MATCHING_CONFIG))
    stats = lhco_like_stats(config)
    print(f"paper-size networks ({PAPER_CONFIG.name}), {os.cpu_count()} CPU threads, TensorFlow {tf.__version__}")
    for npart in args.npart:
        paper, _ = events_per_second(model, stats, npart, args.events, PAPER[0], args.paper_steps)
        paper *= args.paper_steps / PAPER[1]
        speed = dict(bucket_size=max(1, args.fast_events // 4), jit_compile=True)
        fast, warm_up = events_per_second(model, stats, npart, args.fast_events, *FAST, **speed)
        flow_rate, _ = events_per_second(flow_matching_model, stats, npart, args.fast_events, *FLOW_MATCHING, **speed)
        for name, (solver, steps), rate, events, solvers in (
                ("paper", PAPER, paper, args.events, sampling), ("fast ", FAST, fast, args.fast_events, sampling),
                ("EPiC-FM", FLOW_MATCHING, flow_rate, args.fast_events, flow)):
            calls = 2 * solvers.evaluations(solver, steps)  # jet and particle network
            print(f"P={npart:4d}  {name:7s} {solver:8s} T={steps:3d} ({calls:4d} network calls, {events:3d} events)  "
                  f"{rate:8.3f} events/s" + (f" (timed at {args.paper_steps} steps, scaled)"
                                              if name == "paper" and args.paper_steps != PAPER[1] else ""))
        print(f"P={npart:4d}  fast path / paper: {fast / paper:5.1f}x  (fast warm-up incl. XLA compile {warm_up:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
