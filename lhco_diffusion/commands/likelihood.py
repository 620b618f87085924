"""Log-likelihoods and anomaly scores of a processed file's events under a trained generator.

    python -m lhco_diffusion.likelihood --config FILE --checkpoint RUN/checkpoints/best \
        --input FILE.h5 --output FILE.h5 [--exact | --hutchinson] [--batch-size B] [--limit N]

writes log p(jets | mjj), log p(particles_j | jet_j, mjj), the constituent counts and the
density paper's anomaly score (eq. 7) per event (``workflow.likelihood``).
"""
from __future__ import annotations

from pathlib import Path

from lhco_diffusion import cli
from lhco_diffusion.workflow import checkpoints, likelihood


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], overwrite=True)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint directory of train")
    parser.add_argument("--input", type=Path, required=True, help="processed HDF5 file of events")
    parser.add_argument("--output", type=Path, required=True, help="HDF5 file to write")
    divergence = parser.add_mutually_exclusive_group()
    divergence.add_argument("--exact", dest="exact", action="store_true", default=None,
                            help="exact particle divergence (default: likelihood.exact_divergence)")
    divergence.add_argument("--hutchinson", dest="exact", action="store_false",
                            help="Hutchinson estimate with Rademacher probes")
    parser.add_argument("--batch-size", type=int, help="events per ODE solve (default: likelihood.batch_size)")
    parser.add_argument("--limit", type=int, help="only the first N events of the input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Hutchinson probes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return cli.run(lambda: _likelihood(args))


def _likelihood(args) -> None:
    if args.batch_size is not None:
        args.overrides.append(f"likelihood.batch_size={args.batch_size}")
    cli.check_at_least("--limit", args.limit, 1)
    checkpoint = checkpoints.load(args.checkpoint)
    config = checkpoints.run_config(checkpoint, cli.load_config(args))
    exact = config.likelihood.exact_divergence if args.exact is None else args.exact
    n = likelihood.write_likelihoods(args.output, checkpoint, config, args.input, exact, config.likelihood.batch_size,
                                     args.limit, args.seed, args.overwrite, progress=not args.quiet,
                                     attrs={"checkpoint": str(args.checkpoint)})
    print(f"wrote log-likelihoods of {n} events ({'exact' if exact else 'Hutchinson'} divergence) to {args.output}")
