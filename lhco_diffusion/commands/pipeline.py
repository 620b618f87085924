"""The whole search in one command: prepare -> train -> sample -> classify -> evaluate.

    python -m lhco_diffusion.pipeline --config configs/default.yaml [--set section.key=value]

Each step is the workflow function its own command calls, with the one loaded configuration;
everything goes under ``paths.run_dir``:

    checkpoints/  training_log.csv   the generators (train)
    samples/SR.h5                    sampling.n_events generated SR background events (sample)
    samples/SR_background.h5         the true SR background of the data, for the feature plots
    scores/<mode>/                   classify, for cwola and idealized, every classifier.nsig and
                                     classifier.seeds seed
    evaluation/                      SIC/ROC plots, max SIC and AUC versus nsig, summary.md/json

A step whose output already exists is skipped (training and sampling resume), so an interrupted
pipeline is completed by running the same command again.
"""
from __future__ import annotations

from pathlib import Path

from lhco_diffusion import cli, distributed
from lhco_diffusion.config import Config, expand
from lhco_diffusion.data import processed, selection, sources
from lhco_diffusion.files import atomic_output
from lhco_diffusion.workflow import checkpoints, evaluation, scores, templates, training, weak_supervision

MODES = ("cwola", "idealized")


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    return cli.run(lambda: pipeline(cli.load_config(args)))


def pipeline(config: Config) -> None:
    """Run (or complete) every step of the search for ``config``; see the module docstring."""
    run_dir = expand(config.paths.run_dir)
    samples, score_dir, evaluation_dir = run_dir / "samples", run_dir / "scores", run_dir / "evaluation"
    context = distributed.init()

    data_path = sources.processed_file(config)
    _announce("train")
    summary = training.train(config, resume=True)
    generated = samples / "SR.h5"
    if not processed.is_complete(generated):
        _announce("sample")
        checkpoint = checkpoints.load(summary["best"])
        settings = config.sampling
        templates.write_templates(generated, checkpoint, config, data_path, "SR", settings.n_events,
                                  settings.seed, settings.batch_size, resume=True,
                                  attrs={"checkpoint": summary["best"], "data": str(data_path)})
    reference = samples / "SR_background.h5"
    if not reference.exists():
        _write_signal_region_background(config, data_path, reference)
    for mode in MODES:
        for nsig in config.classifier.nsig:
            for seed in range(config.classifier.seeds):
                if (score_dir / mode / scores.score_name(nsig, seed)).exists():
                    continue
                _announce(f"classify {mode} nsig={nsig} seed={seed}")
                weak_supervision.classify(config, mode, seed, data_path, nsig, generated, output=score_dir / mode,
                                          context=context)
    _announce("evaluate")
    summary = evaluation.evaluate(config, score_dir, evaluation_dir, [generated], reference, overwrite=True)
    print(evaluation.markdown(summary))
    print(f"SIC and ROC plots: {evaluation_dir}/sic_*.png, {evaluation_dir}/roc_*.png, "
          f"{evaluation_dir}/max_sic_vs_nsig.png")
    print(f"summary table: {evaluation_dir / 'summary.md'}")


def _announce(step: str) -> None:
    print(f"== {step}", flush=True)


def _write_signal_region_background(config: Config, data_path: Path, output: Path) -> None:
    """The data's true SR background as a processed file (the reference of the feature plots),
    streamed chunk by chunk."""
    with atomic_output(output) as temporary, processed.EventWriter(temporary, config.data.npart,
                                                                   {"source": str(data_path)}) as writer:
        for events in processed.chunks(data_path, config.data.npart):
            in_signal_region = selection.region_mask(events.mjj, "SR", config.data)
            writer.append(events.select(in_signal_region & (events.label == 0)))
        writer.set_attrs(complete=True)
