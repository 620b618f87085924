"""Throughput and peak memory of the preparation (raw LHCO layout -> fastjet -> processed HDF5).

    python benchmarks/prepare.py [--events 20000] [--workers 2] [--chunk-size 10000] [--npart 279]

Synthetic raw events are generated first (in a separate process, not measured); the
preparation then runs in a fresh process that reports its wall time, its CPU time and that of
its workers (user + system: on a shared machine the CPU time per event moves much less with
the load than the wall-clock rate), and its peak resident memory (ru_maxrss) and that of its
largest clustering worker. Targets: >= 1000 events/s on 2
cores (the 1.1M-event R&D file in under 20 minutes) and peak memory independent of the file
size, under 3 GB. Run it with two --events values to see the memory stay flat.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--npart", type=int, default=279)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the timed run
    args = parser.parse_args()
    if args.measure:
        return _measure(args)
    with tempfile.TemporaryDirectory() as directory:
        raw = Path(directory) / "raw.h5"
        start = time.perf_counter()
        _python(f"from lhco_diffusion.data.synthetic import generate_raw; "
                f"generate_raw({str(raw)!r}, {args.events}, 0.1, 1, chunk_size={args.chunk_size})")
        generation = time.perf_counter() - start
        options = {"--measure": raw, "--workers": args.workers, "--chunk-size": args.chunk_size,
                   "--npart": args.npart}
        arguments = [str(item) for option in options.items() for item in option]
        report = json.loads(_python(None, __file__, *arguments).splitlines()[-1])
    rate = report["n_read"] / report["seconds"]
    print(f"synthetic generation: {args.events / generation:,.0f} events/s")
    print(f"preparation: {report['n_read']} events ({report['n_kept']} kept) in {report['seconds']:.1f} s "
          f"= {rate:,.0f} events/s with {args.workers} worker(s), chunk {args.chunk_size}, P={args.npart}")
    cpu = report["main_cpu"] + report["worker_cpu"]
    print(f"CPU time: {1e6 * cpu / report['n_read']:.0f} us/event (main process {report['main_cpu']:.1f} s, "
          f"workers {report['worker_cpu']:.1f} s)")
    main_mb, worker_mb = report["main_mb"], report["worker_mb"]
    print(f"peak memory: main process {main_mb:.0f} MB, largest worker {worker_mb:.0f} MB "
          f"(all processes together at most {main_mb + args.workers * worker_mb:.0f} MB)")
    print(f"1.1M events would take {1.1e6 / rate / 60:.1f} min")
    return 0


def _measure(args) -> int:
    from lhco_diffusion.data.sources import prepare_file

    output = args.measure.with_name("processed.h5")
    cpu_at_start = time.process_time()  # the imports are not part of the preparation
    start = time.perf_counter()
    summary = prepare_file(args.measure, output, args.npart, 1.0, 1200.0, args.chunk_size, args.workers,
                           progress=False)
    seconds = time.perf_counter() - start
    main, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps({"seconds": seconds, "n_read": summary["n_read"], "n_kept": summary["n_kept"],
                      "main_cpu": main.ru_utime + main.ru_stime - cpu_at_start,
                      "worker_cpu": workers.ru_utime + workers.ru_stime,
                      "main_mb": main.ru_maxrss / 1024, "worker_mb": workers.ru_maxrss / 1024}))
    return 0


def _python(code: str | None, *arguments: str) -> str:
    """Run Python on the package of this checkout (not whichever one the environment installed)."""
    command = [sys.executable, *(["-c", code] if code else arguments)]
    path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))
    return subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}).stdout


if __name__ == "__main__":
    sys.exit(main())
