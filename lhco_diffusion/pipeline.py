"""The whole search in one command: prepare -> train -> sample -> classify -> evaluate.

    python -m lhco_diffusion.pipeline --config configs/default.yaml [--set section.key=value]

Each step is the step's own entry point, run with the same ``--config`` and ``--set`` values;
everything goes under ``paths.run_dir``:

    checkpoints/  training_log.csv   the diffusion models (train)
    samples/SR.h5                    sampling.n_events generated SR background events (sample)
    samples/SR_background.h5         the true SR background of the data, for the feature plots
    scores/<mode>/                   classify, for cwola and idealized, every classifier.nsig and
                                     classifier.seeds seed
    evaluation/                      SIC/ROC plots, max SIC and AUC versus nsig, summary.md/json

A step whose output already exists is skipped (training and sampling resume), so an interrupted
pipeline is completed by running the same command again.
"""
from __future__ import annotations

import sys
from pathlib import Path

from lhco_diffusion import classify, cli, config as config_module, evaluate, sample, train, weak_supervision
from lhco_diffusion.data import processed, regions, sources
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output

MODES = ("cwola", "idealized")


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    return cli.run(lambda: _pipeline(args))


def _pipeline(args) -> None:
    config = cli.load_config(args)
    shared = ["--config", args.config, *(item for value in args.overrides for item in ("--set", value))]
    run_dir = config_module.expand(config.paths.run_dir)
    samples, scores, evaluation = run_dir / "samples", run_dir / "scores", run_dir / "evaluation"

    data_path = sources.processed_file(config)
    _step("train", train.main, shared + ["--resume"])
    generated = samples / "SR.h5"
    if not _complete(generated):
        _step("sample", sample.main, shared + ["--checkpoint", str(run_dir / "checkpoints" / "best"),
                                               "--region", "SR", "--output", str(generated), "--resume"])
    reference = samples / "SR_background.h5"
    if not reference.exists():
        _write_signal_region_background(config, data_path, reference)
    for mode in MODES:
        for nsig in config.classifier.nsig:
            for seed in range(config.classifier.seeds):
                if (scores / mode / weak_supervision.score_name(nsig, seed)).exists():
                    continue
                _step(f"classify {mode} nsig={nsig} seed={seed}", classify.main,
                      shared + ["--mode", mode, "--nsig", str(nsig), "--seed", str(seed),
                                "--generated", str(generated), "--output", str(scores / mode)])
    _step("evaluate", evaluate.main, shared + ["--overwrite", "--scores", str(scores), "--output", str(evaluation),
                                               "--generated", str(generated), "--reference", str(reference)])
    print(f"SIC and ROC plots: {evaluation}/sic_*.png, {evaluation}/roc_*.png, {evaluation}/max_sic_vs_nsig.png")
    print(f"summary table: {evaluation / 'summary.md'}")


def _step(name: str, entry_point, argv: list[str]) -> None:
    print(f"== {name}", flush=True)
    code = entry_point(argv)
    if code:
        raise InputError(f"the {name} step failed (exit code {code}); fix it and rerun the pipeline to continue")


def _complete(path: Path) -> bool:
    return path.exists() and bool(processed.read_attrs(path).get("complete", False))


def _write_signal_region_background(config, data_path: Path, output: Path) -> None:
    """The data's true SR background as a processed file (the reference of the feature plots)."""
    events = regions.signal_region_events(processed.load(data_path, npart=config.data.npart), config.data)
    background = events.select(events.label == 0)
    with atomic_output(output) as temporary, processed.EventWriter(temporary, config.data.npart,
                                                                   {"source": str(data_path)}) as writer:
        writer.append(background)


if __name__ == "__main__":
    sys.exit(main())
