"""Train the anomaly classifier of one mode and score its independent test set.

    python -m lhco_diffusion.classify --config FILE --mode cwola --generated SR.h5 --nsig 1000 --seed 3
    python -m lhco_diffusion.classify --config FILE --mode idealized|supervised [--nsig N] [--seed S]
    python -m lhco_diffusion.classify --config FILE --mode two-sample --generated SB.h5 --region SB \
        [--reference FILE.h5]
    python -m lhco_diffusion.classify --config FILE --mode cathode|idealized-hl|supervised-hl [--nsig N]

The last three are the CATHODE baseline on four high-level features (``lhco_diffusion.high_level``;
cathode trains its flow once per run and configuration, in ``<run_dir>/flow/``); they run in one
process (under ``horovodrun`` only rank 0 works).

``--data`` overrides the processed file of the configuration; the scores go to
``--output`` (default ``<run_dir>/scores/<mode>/``, two-sample: ``scores/two-sample-<region>/``,
templates from partial diffusion: ``scores/<mode>-<generation mode>-t<t*>/``)
as ``nsig<N>_seed<S>.h5``; an existing score file is replaced only with ``--overwrite`` (checked
before training). Runs under ``horovodrun`` with the data sharded over the workers.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lhco_diffusion import cli, config as config_module, distributed, high_level, weak_supervision
from lhco_diffusion.data import processed, sources
from lhco_diffusion.errors import InputError


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], overwrite=True)
    parser.add_argument("--mode", required=True, choices=weak_supervision.MODES)
    parser.add_argument("--data", type=Path, help="processed file of signal and background (default: config)")
    parser.add_argument("--generated", type=Path, help="generated events (cwola, two-sample)")
    parser.add_argument("--reference", type=Path, help="two-sample reference (default: data background)")
    parser.add_argument("--region", choices=weak_supervision.REGIONS, default="SR", help="two-sample region")
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
    if args.mode in weak_supervision.HIGH_LEVEL_MODES:
        if not context.is_root:
            return
        split = _split(config, data_path)
        task = high_level.signal_region_task(args.mode, config, split, args.nsig, data_path, args.seed)
        path = _score_path(args, config, task)
        scores, record = high_level.train_and_score(task, config, args.seed)
    else:
        task = _task(args, config, data_path)
        path = _score_path(args, config, task)
        scores, record = weak_supervision.train_and_score(task, config, args.seed, context)
    if not context.is_root:
        return
    inputs = {"data": data_path, "generated": args.generated or "", "reference": args.reference or ""}
    auc = weak_supervision.write_scores(path, scores, task, args.seed, config, {**record, **inputs})
    print(f"{task.mode} nsig={task.nsig} seed={args.seed}: test AUC {auc:.4f} on {len(task.test)} "
          f"independent events; wrote {path}")


def _score_path(args, config, task: weak_supervision.Task) -> Path:
    """Where the scores of this training go; ``InputError`` if the file exists without --overwrite."""
    scores_dir = config_module.expand(config.paths.run_dir) / "scores"
    directory = args.output or scores_dir / method_name(task, args.generated)
    path = directory / weak_supervision.score_name(task.nsig, args.seed)
    cli.refuse_existing(path, args.overwrite)
    return path


def _task(args, config, data_path) -> weak_supervision.Task:
    if args.mode == "two-sample":
        if args.generated is None:
            raise InputError("mode two-sample needs --generated FILE.h5")
        return weak_supervision.two_sample_task(config, args.generated, args.region, args.reference,
                                                data_path)
    return weak_supervision.signal_region_task(args.mode, config, _split(config, data_path), args.nsig,
                                               args.generated)


def _split(config, data_path) -> weak_supervision.SignalRegionSplit:
    extra = weak_supervision.extra_background_file(config)
    return weak_supervision.split_signal_region(config, data_path, extra)


def method_name(task: weak_supervision.Task, generated: Path | None = None) -> str:
    """The score directory of a training: the mode (two-sample: ``two-sample-<region>``), and for
    templates made by partial diffusion also their generation mode and t*, e.g.
    ``cwola-partial-sb-t0.4``, so ``evaluate`` shows every generation method as its own curve."""
    name = task.mode if task.mode != "two-sample" else f"two-sample-{task.region}"
    if generated is not None:
        attrs = processed.read_attrs(generated)
        if attrs.get("mode", "noise") != "noise":
            name += f"-{attrs['mode']}-t{float(attrs['t_star']):g}"
    return name


if __name__ == "__main__":
    sys.exit(main())
