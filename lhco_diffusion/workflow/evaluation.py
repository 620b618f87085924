"""Evaluation of a search: SIC and ROC with seed bands per mode, max SIC and AUC versus the
injected signal, the generated-versus-reference feature plots and fidelity reports
(``workflow.fidelity``: W1 per feature beside its noise floor, FPD, KPD, the two-sample AUC of
any two-sample scores), and summary.json/summary.md.

    summary = evaluate(config, "RUN/scores", "RUN/evaluation", generated="SR.h5", reference="SR_bg.h5")

In the versus-nsig figures the CATHODE baseline's modes (four high-level features) are drawn
dashed beside the full ones. No TensorFlow: only score files and processed files are read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lhco_diffusion.config import Config
from lhco_diffusion.data import processed
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output, refuse_existing, writable_directory, write_json
from lhco_diffusion.workflow import fidelity, metrics, plotting, scores
from lhco_diffusion.workflow.tasks import HIGH_LEVEL_MODES


def evaluate(config: Config, scores_dir: str | os.PathLike | None, output: str | os.PathLike,
             generated: list[str | os.PathLike] | None = None, reference: str | os.PathLike | None = None,
             overwrite: bool = False) -> dict:
    """Write the SIC/ROC figures of every mode in ``scores_dir``, the versus-nsig figures, the
    generated-versus-reference figure (when both are given; ``generated`` holds one file per
    generator, each with its fidelity report: fidelity.json/.md, or fidelity_<generator>.json/.md
    beside a first generator's) and summary.json/.md into ``output``; returns the summary.
    Either ``scores_dir`` or ``generated`` may be None.

    Every input is read and checked before the first file is written; an existing evaluation
    (its summary.json) is replaced only with ``overwrite``.
    """
    output = Path(output)
    if (generated is None) != (reference is None):
        raise InputError("--generated and --reference must be given together")
    if scores_dir is None and generated is None:
        raise InputError("give --scores, or --generated with --reference, or both")
    settings, formats = config.evaluation, config.evaluation.formats
    groups = {} if scores_dir is None else scores.collect_scores(scores_dir, expected_seeds=config.classifier.seeds)
    by_generator = None if generated is None else _by_generator(generated)
    histograms = None if generated is None else plotting.feature_histograms(by_generator, reference)
    results_of = {name: metrics.injections([(f.nsig, f.seed, f.score, f.label) for f in files],
                                           settings.min_background_events, settings.band_quantiles)
                  for name, files in groups.items()}
    refuse_existing(output / "summary.json", overwrite)
    writable_directory(output)
    summary = {"scores": str(scores_dir or ""), "config": config.source, "modes": {},
               "min_background_events": settings.min_background_events,
               "band_quantiles": list(settings.band_quantiles)}
    for name, files in tqdm(groups.items(), desc="modes", unit="mode"):
        results = results_of[name]
        curves = {result.nsig: result.curves for result in results}
        for quantity, prefix in (("sic", "sic"), ("rejection", "roc")):
            figure = plotting.curve_figure(name, curves, quantity, settings.band_quantiles)
            plotting.save(figure, output, f"{prefix}_{name}", formats)
        attrs = files[0].attrs
        summary["modes"][name] = {
            "mode": attrs["mode"], "region": attrs.get("region", ""), "test_digest": attrs["test_digest"],
            "n_test_signal": int(np.sum(files[0].label == 1)),
            "n_test_background": int(np.sum(files[0].label == 0)),
            "injections": [result.to_dict() for result in results],
        }
    high_level = frozenset(name for name, mode in summary["modes"].items()
                           if mode["mode"] in HIGH_LEVEL_MODES)
    for quantity in ("max_sic", "auc") if groups else ():
        figure = plotting.versus_nsig_figure(results_of, quantity, settings.band_quantiles, high_level)
        plotting.save(figure, output, f"{quantity}_vs_nsig", formats)
    if histograms is not None:
        plotting.save(plotting.feature_figure(histograms), output, "generated_vs_reference", formats)
        summary["features"] = {"generated": {label: str(path) for label, path in by_generator.items()},
                               "reference": str(reference),
                               "wasserstein": {label: {name: _finite(plotting.wasserstein(histogram, label))
                                                       for name, histogram in histograms.items()}
                                               for label in by_generator}}
        for index, (label, path) in enumerate(by_generator.items()):
            _fidelity(path, reference, groups, settings.band_quantiles, output,
                      "fidelity" if index == 0 else f"fidelity_{label}")
    write_json(output / "summary.json", summary)
    _write(output / "summary.md", markdown(summary))
    return summary


def _fidelity(generated: Path, reference, groups: dict, quantiles: tuple[float, float], output: Path,
              stem: str) -> None:
    """``<stem>.json/md`` of ``generated`` against ``reference`` (their first ``fidelity.MAX_EVENTS``
    events), with the AUC of every two-sample mode among the score ``groups``."""
    report = fidelity.compare(processed.load(generated, 0, fidelity.MAX_EVENTS),
                              processed.load(reference, 0, fidelity.MAX_EVENTS))
    report.update(generated=str(generated), reference=str(reference))
    for name, files in groups.items():
        if files[0].attrs["mode"] == "two-sample":
            fidelity.add_two_sample_auc(report, name, [(f.seed, f.score, f.label) for f in files], quantiles)
    fidelity.write(report, output, stem)


def _by_generator(paths) -> dict[str, Path]:
    """``{generator: path}`` of the generated files, from the generator each records (diffusion if none)."""
    generated = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"generated events file {path} does not exist")
        generator = processed.read_attrs(path).get("generator", "diffusion")
        if generator in generated:
            raise InputError(f"{generated[generator]} and {path} both hold {generator} events; "
                             "give one file per generator")
        generated[generator] = path
    return generated


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def markdown(summary: dict) -> str:
    low, high = (f"{q:.0%}" for q in summary["band_quantiles"])
    lines = [f"| mode | region | nsig | seeds | AUC median [{low}, {high}] | max SIC median [{low}, {high}] "
             "|",
             "|---|---|---:|---:|---|---|"]
    for name, mode in summary["modes"].items():
        for injection in mode["injections"]:
            auc, sic = injection["auc"], injection["max_sic"]
            lines.append(f"| {name} | {mode['region']} | {injection['nsig']} | {len(injection['seeds'])} | "
                         f"{auc['median']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}] | "
                         f"{sic['median']:.2f} [{sic['low']:.2f}, {sic['high']:.2f}] |")
    lines.append(f"\nSIC uses only cuts keeping at least {summary['min_background_events']} test-background "
                 "events.")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text)
