"""Generate background events with a trained generator (diffusion or flow matching).

    python -m lhco_diffusion.sample --config FILE --checkpoint RUN/checkpoints/best --region SR \
        --n 200000 --output RUN/samples/SR.h5 [--batch-size B] [--seed S] [--resume]
    python -m lhco_diffusion.sample ... --mode partial-sb --t-star 0.4     (partial diffusion, Drapes)

The output is a processed-schema file (``data.processed``) with the config, checkpoint, solver,
steps, mode and seed in its attrs. It is written chunk by chunk: ``--resume`` completes an
interrupted file without losing or duplicating events. ``--mode``, ``--t-star``, ``--solver`` and
``--steps`` override the ``sampling`` section; the network weights are the checkpoint's EMA.
"""
from __future__ import annotations

from pathlib import Path

from lhco_diffusion.workflow import checkpoints, templates
from lhco_diffusion import cli
from lhco_diffusion.config import SOLVERS
from lhco_diffusion.data import sources
from lhco_diffusion.data.selection import REGIONS


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
    return cli.run(lambda: _sample(args))


def _sample(args) -> None:
    options = {"mode": args.mode, "t_star": args.t_star, "solver": args.solver, "num_steps": args.steps}
    args.overrides += [f"sampling.{key}={value}" for key, value in options.items() if value is not None]
    checkpoint = checkpoints.load(args.checkpoint)
    config = checkpoints.run_config(checkpoint, cli.load_config(args))  # validated like any --set
    sampling = config.sampling
    data_path = sources.processed_file(config, progress=not args.quiet)
    summary = templates.write_templates(
        args.output, checkpoint, config, data_path, args.region, args.n or sampling.n_events,
        seed=sampling.seed if args.seed is None else args.seed,
        batch_size=args.batch_size or sampling.batch_size, resume=args.resume, reference=args.reference,
        progress=not args.quiet, attrs={"checkpoint": str(args.checkpoint), "data": str(data_path)},
    )
    print(f"wrote {summary['n']} {args.region} events ({sampling.mode}, {sampling.solver} with "
          f"{sampling.num_steps} steps) to {summary['output']}")

