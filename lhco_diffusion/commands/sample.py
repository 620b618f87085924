"""Generate background events with a trained generator (diffusion or flow matching).

    python -m lhco_diffusion.sample --config FILE --checkpoint RUN/checkpoints/best --region SR \
        --n 200000 --output RUN/samples/SR.h5 [--batch-size B] [--seed S] [--resume]
    python -m lhco_diffusion.sample ... --mode partial-sb --t-star 0.4     (partial diffusion, Drapes)

The output is a processed-schema file (``data.processed``) with the config, checkpoint, solver,
steps, mode and seed in its attrs. It is written chunk by chunk: an interrupted (killed, Ctrl-C)
file keeps its finished chunks but is marked incomplete, so every command refuses to read it
until ``--resume`` completes it without losing or duplicating events. ``--n``, ``--batch-size``,
``--seed``, ``--mode``, ``--t-star``, ``--solver`` and ``--steps`` override the ``sampling``
section (and are checked like it); the network weights are the checkpoint's EMA.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lhco_diffusion import cli
from lhco_diffusion.config import SOLVERS
from lhco_diffusion.data import processed, sources
from lhco_diffusion.data.selection import REGIONS
from lhco_diffusion.workflow import checkpoints, templates


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint directory of train")
    parser.add_argument("--region", choices=REGIONS, default="SR")
    parser.add_argument("--n", type=int, help="events to generate (default: sampling.n_events)")
    parser.add_argument("--output", type=Path, required=True, help="HDF5 file to write")
    parser.add_argument("--batch-size", type=int, help="events per chunk (default: sampling.batch_size)")
    parser.add_argument("--seed", type=int, help="random seed (default: sampling.seed)")
    parser.add_argument("--mode", choices=templates.MODES, help="noise or a partial-diffusion mode")
    parser.add_argument("--t-star", type=float, help="partial diffusion: noise level to start from")
    parser.add_argument("--solver", choices=SOLVERS, help="one of the checkpoint's generator's solvers")
    parser.add_argument("--steps", type=int, help="solver steps over the whole [0, 1] time interval")
    parser.add_argument("--reference", type=Path, help="partial-ref: processed file whose SR events to use")
    parser.add_argument("--resume", action="store_true", help="complete an interrupted output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    arguments = sys.argv[1:] if argv is None else list(argv)
    resume = shlex.join(["python", "-m", "lhco_diffusion.sample", *arguments, *(["--resume"] * (not args.resume))])
    return cli.run(lambda: _sample(args, resume))


def _sample(args, resume_command: str) -> None:
    options = {"n_events": args.n, "batch_size": args.batch_size, "seed": args.seed, "mode": args.mode,
               "t_star": args.t_star, "solver": args.solver, "num_steps": args.steps}
    args.overrides += [f"sampling.{key}={value}" for key, value in options.items() if value is not None]
    checkpoint = checkpoints.load(args.checkpoint)
    config = checkpoints.run_config(checkpoint, cli.load_config(args))  # validated like any --set
    sampling = config.sampling
    data_path = sources.processed_file(config, progress=not args.quiet)
    attrs = {"checkpoint": str(args.checkpoint), "data": str(data_path), processed.RESUME_COMMAND: resume_command}
    try:
        summary = templates.write_templates(
            args.output, checkpoint, config, data_path, args.region, sampling.n_events, seed=sampling.seed,
            batch_size=sampling.batch_size, resume=args.resume, reference=args.reference,
            progress=not args.quiet, attrs=attrs,
        )
    except KeyboardInterrupt:
        if not args.output.is_file():
            raise
        raise KeyboardInterrupt(f"{args.output} keeps the events generated so far, marked incomplete so that no "
                                f"command reads it; complete it with `{resume_command}`") from None
    print(f"wrote {summary['n']} {args.region} events ({sampling.mode}, {sampling.solver} with "
          f"{sampling.num_steps} steps) to {summary['output']}")

