"""Train the jet and particle diffusion models on the sideband background.

    python -m lhco_diffusion.train --config configs/default.yaml [--set training.epochs=5] [--resume]
    horovodrun -np 4 python -m lhco_diffusion.train --config configs/lhco_279.yaml      # one machine
    srun python -m lhco_diffusion.train --config configs/lhco_279.yaml      # Slurm, Horovod with MPI

Checkpoints (``best``, ``last``), ``training_log.csv`` and TensorBoard logs go to ``paths.run_dir``;
``--resume`` continues a killed run from ``checkpoints/last`` exactly where it stopped, with the
number of workers the checkpoint records (``--rescale-workers`` accepts another).
"""
from __future__ import annotations


from lhco_diffusion import cli, distributed
from lhco_diffusion.workflow import training


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="continue from <run_dir>/checkpoints/last")
    parser.add_argument("--rescale-workers", action="store_true",
                        help="with --resume: accept another number of workers than the checkpoint's "
                             "(global batch, steps per epoch and learning rate follow the new count; the "
                             "cosine decay continues from the same epoch)")
    args = parser.parse_args(argv)
    return cli.run(lambda: _train(args))


def _train(args) -> None:
    config = cli.load_config(args)
    try:
        summary = training.train(config, resume=args.resume, rescale_workers=args.rescale_workers)
    except KeyboardInterrupt:
        last = training.run_paths(config)["last"]
        raise KeyboardInterrupt(f"{last} holds the last finished epoch (if any); rerun with --resume to "
                                "continue from it") from None
    if distributed.current().is_root:
        stopped = "stopped early" if summary["stopped_early"] else "finished"
        print(f"{stopped} after epoch {summary['epochs']} of {config.training.epochs}: best test loss "
              f"{summary['best_loss']:.4f}; checkpoints {summary['best']} and {summary['last']}")
