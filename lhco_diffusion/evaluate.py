"""Evaluate classifier scores: ROC, AUC and SIC with seed bands, and generated-vs-reference plots.

    python -m lhco_diffusion.evaluate --config FILE --scores RUN/scores --output RUN/evaluation \
        [--generated SR_SAMPLES.h5 --reference SR_DATA.h5]
    python -m lhco_diffusion.evaluate --config FILE --generated G.h5 --reference R.h5 --output DIR

``--scores`` holds one directory per mode (as ``classify`` writes them) or score files itself.
Writes sic_<mode>, roc_<mode>, max_sic_vs_nsig, auc_vs_nsig (and generated_vs_reference) in
every ``evaluation.formats``, plus summary.json and summary.md. In the versus-nsig figures the
CATHODE baseline's modes (four high-level features) are drawn dashed beside the full ones.
With ``--generated``/``--reference`` it also writes fidelity.json and fidelity.md
(``workflow.fidelity``: W1 per feature beside its noise floor, FPD, KPD, and the two-sample AUC
of any two-sample scores among ``--scores``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lhco_diffusion import cli, metrics, plotting, weak_supervision
from lhco_diffusion.data import processed
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output
from lhco_diffusion.workflow import fidelity


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, help="directory of score files (per mode)")
    parser.add_argument("--output", type=Path, required=True, help="directory for plots and summaries")
    parser.add_argument("--generated", type=Path, help="generated events to compare with --reference")
    parser.add_argument("--reference", type=Path, help="reference events (simulation) for --generated")
    args = parser.parse_args(argv)
    return cli.run(lambda: _evaluate(args))


def _evaluate(args) -> None:
    config = cli.load_config(args)
    if (args.generated is None) != (args.reference is None):
        raise InputError("--generated and --reference must be given together")
    if args.scores is None and args.generated is None:
        raise InputError("give --scores, or --generated with --reference, or both")
    settings, formats = config.evaluation, config.evaluation.formats
    groups = {} if args.scores is None else weak_supervision.collect_scores(
        args.scores, expected_seeds=config.classifier.seeds)
    summary = {"scores": str(args.scores or ""), "config": config.source, "modes": {},
               "min_background_events": settings.min_background_events,
               "band_quantiles": list(settings.band_quantiles)}
    results_of = {}
    for name, files in tqdm(groups.items(), desc="modes", unit="mode"):
        trainings = [(f.nsig, f.seed, f.score, f.label) for f in files]
        results = results_of[name] = metrics.injections(trainings, settings.min_background_events,
                                                        settings.band_quantiles)
        curves = {result.nsig: result.curves for result in results}
        for quantity, prefix in (("sic", "sic"), ("rejection", "roc")):
            figure = plotting.curve_figure(name, curves, quantity, settings.band_quantiles)
            plotting.save(figure, args.output, f"{prefix}_{name}", formats)
        attrs = files[0].attrs
        summary["modes"][name] = {
            "mode": attrs["mode"], "region": attrs.get("region", ""), "test_digest": attrs["test_digest"],
            "n_test_signal": int(np.sum(files[0].label == 1)),
            "n_test_background": int(np.sum(files[0].label == 0)),
            "injections": [result.to_dict() for result in results],
        }
    high_level = frozenset(name for name, mode in summary["modes"].items()
                           if mode["mode"] in weak_supervision.HIGH_LEVEL_MODES)
    for quantity in ("max_sic", "auc") if groups else ():
        figure = plotting.versus_nsig_figure(results_of, quantity, settings.band_quantiles, high_level)
        plotting.save(figure, args.output, f"{quantity}_vs_nsig", formats)
    if args.generated is not None:
        histograms = plotting.feature_histograms(args.generated, args.reference)
        plotting.save(plotting.feature_figure(histograms), args.output, "generated_vs_reference", formats)
        summary["features"] = {"generated": str(args.generated), "reference": str(args.reference),
                               "wasserstein": {name: _finite(plotting.wasserstein(histogram))
                                               for name, histogram in histograms.items()}}
        _fidelity(args, groups, settings.band_quantiles)
    _write(args.output / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write(args.output / "summary.md", _markdown(summary))
    print(_markdown(summary))
    print(f"wrote plots and summaries to {args.output}")


def _fidelity(args, groups: dict, quantiles: tuple[float, float]) -> None:
    """fidelity.json/md of --generated against --reference (their first ``fidelity.MAX_EVENTS``
    events), with the AUC of every two-sample mode among the scores."""
    report = fidelity.compare(processed.load(args.generated, 0, fidelity.MAX_EVENTS),
                              processed.load(args.reference, 0, fidelity.MAX_EVENTS))
    report.update(generated=str(args.generated), reference=str(args.reference))
    for name, files in groups.items():
        if files[0].attrs["mode"] == "two-sample":
            fidelity.add_two_sample_auc(report, name, [(f.seed, f.score, f.label) for f in files], quantiles)
    fidelity.write(report, args.output)
    print(fidelity.markdown(report))


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _markdown(summary: dict) -> str:
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


if __name__ == "__main__":
    sys.exit(main())
