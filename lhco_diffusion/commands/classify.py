"""Train the anomaly classifier of one mode and score its independent test set.

    python -m lhco_diffusion.classify --config FILE --mode cwola --generated SR.h5 --nsig 1000 --seed 3
    python -m lhco_diffusion.classify --config FILE --mode idealized|supervised [--nsig N] [--seed S]
    python -m lhco_diffusion.classify --config FILE --mode two-sample --generated SB.h5 --region SB \
        [--reference FILE.h5]
    python -m lhco_diffusion.classify --config FILE --mode cathode|idealized-hl|supervised-hl [--nsig N]

The last three are the CATHODE baseline on four high-level features (``workflow.cathode``;
cathode trains its flow once per run and configuration, in ``<run_dir>/flow/``); they run in one
process (under ``horovodrun`` only rank 0 works).

``--data`` overrides the processed file of the configuration; the scores go to
``--output`` (default ``<run_dir>/scores/<mode>/``, two-sample: ``scores/two-sample-<region>/``,
templates from partial diffusion: ``scores/<mode>-<generation mode>-t<t*>/``)
as ``nsig<N>_seed<S>.h5``; an existing score file is replaced only with ``--overwrite`` (checked
before training). Runs under ``horovodrun`` with the data sharded over the workers.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from lhco_diffusion import cli, distributed
from lhco_diffusion.data import sources
from lhco_diffusion.data.selection import REGIONS
from lhco_diffusion.workflow import tasks, weak_supervision


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], overwrite=True)
    parser.add_argument("--mode", required=True, choices=tasks.MODES)
    parser.add_argument("--data", type=Path, help="processed file of signal and background (default: config)")
    parser.add_argument("--generated", type=Path, help="generated events (cwola, two-sample)")
    parser.add_argument("--reference", type=Path, help="two-sample reference (default: data background)")
    parser.add_argument("--region", choices=REGIONS, default="SR", help="two-sample region")
    parser.add_argument("--nsig", type=int, help="signal events in class 1 (default: all set aside)")
    parser.add_argument("--seed", type=int, default=0, help="classifier initialisation and split seed")
    parser.add_argument("--output", type=Path, help="directory for the score file")
    args = parser.parse_args(argv)
    return cli.run(lambda: _classify(args))


def _classify(args) -> None:
    config = cli.load_config(args)
    cli.check_at_least("--nsig", args.nsig, 0)
    cli.check_at_least("--seed", args.seed, 0)
    context = distributed.init()
    if not context.is_root:
        warnings.simplefilter("ignore")
    data_path = args.data or sources.processed_file(config, progress=context.is_root)
    written = weak_supervision.classify(config, args.mode, args.seed, data_path, args.nsig, args.generated,
                                        args.reference, args.region, args.output, args.overwrite, context)
    if written:
        path, auc = written
        print(f"{args.mode} nsig={args.nsig} seed={args.seed}: test AUC {auc:.4f}; wrote {path}")
