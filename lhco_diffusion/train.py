"""Train the jet and particle diffusion models on the sideband background.

    python -m lhco_diffusion.train --config configs/default.yaml [--set training.epochs=5] [--resume]
    horovodrun -np 16 python -m lhco_diffusion.train --config configs/lhco_279.yaml

Checkpoints (``best``, ``last``), ``training_log.csv`` and TensorBoard logs go to ``paths.run_dir``;
``--resume`` continues a killed run from ``checkpoints/last`` exactly where it stopped.
"""
from __future__ import annotations

import sys

from lhco_diffusion import cli, distributed, training


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="continue from <run_dir>/checkpoints/last")
    args = parser.parse_args(argv)
    return cli.run(lambda: _train(args))


def _train(args) -> None:
    config = cli.load_config(args)
    try:
        summary = training.train(config, resume=args.resume)
    except KeyboardInterrupt:
        last = training.run_paths(config)["last"]
        raise KeyboardInterrupt(f"{last} holds the last finished epoch (if any); rerun with --resume to "
                                "continue from it") from None
    if distributed.current().is_root:
        stopped = "stopped early" if summary["stopped_early"] else "finished"
        print(f"{stopped} after epoch {summary['epochs']} of {config.training.epochs}: best test loss "
              f"{summary['best_loss']:.4f}; checkpoints {summary['best']} and {summary['last']}")


if __name__ == "__main__":
    sys.exit(main())
