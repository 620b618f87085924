"""Selected pseudo-LHCO events per second from Pythia 8 on this machine.

    python benchmarks/pythia.py [--events 500] [--workers 2] [--no-smear]

First background (QCD dijets) and signal (W' -> XY) separately, each in one process on one
core: the time to start Pythia, then the rate of events that pass the leading-jet selection
(Pythia, the detector model and the fastjet selection together). Then, with --workers > 1, the
whole ``generate`` (process pool, shuffling, writing the raw file) for the same numbers of events.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from lhco_diffusion.data import cluster, pythia


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500, help="selected events per process")
    parser.add_argument("--workers", type=int, default=2, help="processes for the full generate run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-smear", dest="smear", action="store_false")
    args = parser.parse_args()
    cluster.print_banner()
    for process in pythia.PROCESSES:
        start = time.perf_counter()
        selected = []  # times at which events passed the selection
        pythia.generate_process(process, args.events, args.seed, smear=args.smear,
                                report=lambda n: selected.append(time.perf_counter()))
        first_batch, end = selected[0], selected[-1]
        print(f"{process.name:>10}: {args.events} events in {end - start:.1f} s, "
              f"{args.events / (end - start):.1f} events/s on one core "
              f"(first batch after {first_batch - start:.1f} s, including Pythia's initialisation)")
    if args.workers > 1:
        with tempfile.TemporaryDirectory() as directory:
            start = time.perf_counter()
            pythia.generate(Path(directory) / "raw.h5", args.events, args.events, args.seed,
                            args.workers, args.smear, progress=False)
            elapsed = time.perf_counter() - start
        print(f"  generate: {2 * args.events} events with {args.workers} workers in {elapsed:.1f} s, "
              f"{2 * args.events / elapsed:.1f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
