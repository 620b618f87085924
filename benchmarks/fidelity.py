"""The science regression check: does the search still work on realistic events?

    python benchmarks/fidelity.py [--config configs/pythia_30.yaml] [--set section.key=value ...]
                                  [--generator-only]
    make fidelity

On the configuration's events (by default a Pythia 8 pseudo-LHCO sample made once into the cache;
``--set data.raw=FILE`` for any raw file), in order, each step skipped when its output exists
under ``paths.run_dir`` (so a rerun only completes what is missing; a run directory trained with
another configuration is refused, so its figures are never reported as this one's):

1. prepare the events at P = ``data.npart`` (cached);
2. train the diffusion models for ``training.time_budget_minutes`` (resumed if interrupted);
3. generate ``sampling.n_events`` sideband events (mjj of the held-out sideband), the
   signal-region template (``classifier.oversampling`` x ``classifier.n_background``; mjj from
   the KDE of the SR data, signal included), as many SR events at the mjj of the true SR
   background, which judge the generator apart from the KDE, and new particles for as many
   true SR background jets (at most half of them), which judge the particle model apart from
   the jet model against the SR background events whose jets it was not given;
4. train the classifier ``classifier.seeds`` times in each mode: two-sample in the sideband
   (generated against the held-out sideband background), cwola and idealized at the largest
   ``classifier.nsig``;
5. write ``fidelity/`` (fidelity.json/md and the feature plots of each generated sample) and
   ``benchmark.json``, and print one table: AUCs, max SIC, the worst W1/noise-floor ratio and
   the training time per step.

A faithful generator gives a two-sample AUC near 0.5, W1/floor near 1 and a cwola max SIC close
to idealized's.

``--generator-only`` stops after the samples that judge the generator (sideband, SR at the
background's mjj, particles given the true SR jets) and their fidelity: it generates no template
and trains no classifier. It is the check of one more training seed (``--set training.seed=N
--set paths.run_dir=...``); a full run in the same directory later reuses its training and
samples. In a directory where a full run finished, it still reports that run's template and
classifiers (their files are read, nothing is lost from ``benchmark.json``).
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from lhco_diffusion import cli, distributed
from lhco_diffusion import config as config_module
from lhco_diffusion.data import processed, selection, sources
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output
from lhco_diffusion.workflow import (checkpoints, fidelity, generation, metrics, plotting, scores as score_files,
                                     tasks, templates, training, weak_supervision)

ROOT = Path(__file__).resolve().parents[1]
MODES = ("two-sample", "cwola", "idealized")
# generated samples: name -> (region, description)
SAMPLES = {"SB": ("SB", "sideband"), "SR": ("SR", "SR template (KDE mjj)"),
           "SR_background_mjj": ("SR", "SR at the background's mjj"),
           "SR_true_jets": ("SR", "SR particles given the true jets")}
GIVEN_JETS = "SR_true_jets"  # the sample whose jets are the first SR background events'
TEMPLATE = "SR"  # the sample that only the cwola and idealized classifiers need


class StepTimer(tf.keras.callbacks.Callback):
    """Wall-clock seconds of every training step (validation excluded)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], config_required=False)
    parser.set_defaults(config=str(ROOT / "configs" / "pythia_30.yaml"))
    parser.add_argument("--generator-only", action="store_true",
                        help="no SR template and no classifiers: the fidelity of the generator's samples only")
    args = parser.parse_args(argv)
    return cli.run(lambda: _benchmark(args))


def _benchmark(args) -> None:
    config = cli.load_config(args)
    run_dir = config_module.expand(config.paths.run_dir)

    _check_reused_run(config, run_dir)
    data_path = sources.processed_file(config)
    timer = StepTimer()
    summary = training.train(config, resume=True, callbacks=[timer])
    references = {region: selection.reference_background(data_path, region, config) for region in ("SB", "SR")}
    samples = run_dir / "samples"
    names = [name for name in SAMPLES
             if not (args.generator_only and name == TEMPLATE
                     and not processed.is_complete(samples / f"{name}.h5"))]
    generated = _generate(config, data_path, samples, Path(summary["best"]), references["SR"], names)
    modes = [mode for mode in MODES if mode == "two-sample" or TEMPLATE in generated]
    results = {mode: _classify(mode, config, data_path, generated, run_dir / "scores", train=not args.generator_only)
               for mode in modes}
    results = {mode: runs for mode, runs in results.items() if runs is not None}
    reports = _fidelity(data_path, references, generated, run_dir / "fidelity", results.get("two-sample"), config)
    state = checkpoints.read_state(summary["last"])
    record = {
        "config": args.config, "overrides": args.overrides, "data": str(data_path),
        "training": {"epochs": state["epoch"], "seconds": state.get("training_seconds"),
                     **_step_time(timer, run_dir / "benchmark.json")},
        "classifiers": {mode: _bands(runs, config) for mode, runs in results.items()},
        "fidelity": {name: {"worst_ratio": report["worst_ratio"], "fpd": report["fpd"], "kpd": report["kpd"],
                            "worst_by_jet_shape": report["by_jet_shape"]["worst_ratio"]}
                     for name, report in reports.items()},
    }
    with atomic_output(run_dir / "benchmark.json") as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    print(_table(record, config))
    print(f"details: {run_dir / 'fidelity'}/fidelity_*.md, plots {run_dir / 'fidelity'}/*.png, "
          f"{run_dir / 'benchmark.json'}")


def _check_reused_run(config, run_dir: Path) -> None:
    """``InputError`` when ``run_dir`` holds a training whose configuration differs from
    ``config`` beyond its paths (the first differences named). A key that the stored configuration
    predates counts as its default, the behaviour of the version that wrote it."""
    stored_path = run_dir / "checkpoints" / "last" / "config.yaml"
    if not stored_path.exists():
        return
    stored = config_module.from_dict(yaml.safe_load(stored_path.read_text()), source=str(stored_path))
    stored, given = _settings(stored.to_dict()), _settings(config.to_dict())
    differences = [f"{name} {stored.get(name)!r} there, {value!r} here"
                   for name, value in given.items() if stored.get(name) != value]
    if differences:
        raise InputError(f"{run_dir} holds a training with another configuration ({'; '.join(differences[:3])}); "
                         "give another paths.run_dir, or delete it to train again")


def _settings(sections: dict) -> dict:
    """A configuration dict as {"section.key": value}, its paths aside."""
    return {f"{section}.{key}" if key else section: value
            for section, values in sections.items() if section != "paths"
            for key, value in (values.items() if isinstance(values, dict) else [("", values)])}


def _step_time(timer: StepTimer, previous: Path) -> dict:
    """The median seconds per training step of this invocation and the steps it timed; when it
    trained nothing (the run was complete), those recorded by the invocation that trained."""
    if timer.seconds:
        return {"seconds_per_step": statistics.median(timer.seconds), "steps_timed": len(timer.seconds)}
    recorded = json.loads(previous.read_text())["training"] if previous.exists() else {}
    return {"seconds_per_step": recorded.get("seconds_per_step"), "steps_timed": recorded.get("steps_timed", 0)}


def _generate(config, data_path: Path, directory: Path, checkpoint_path: Path,
              signal_region_background: Events, names: list[str]) -> dict[str, Path]:
    """The generated samples ``names`` of ``SAMPLES`` (each completed if a file is partial); the
    true SR background's mjj are resampled for SR_background_mjj, its first events' jets given
    for ``GIVEN_JETS``. A sample is the same whichever others are asked for."""
    n_signal_region = min(config.classifier.n_generated,
                          config.classifier.oversampling * config.classifier.n_background)
    background_mjj = signal_region_background.mjj
    rng = np.random.default_rng(config.sampling.seed)
    plans = {"SB": (config.sampling.n_events, None), "SR": (n_signal_region, None),
             "SR_background_mjj": (n_signal_region, rng.choice(background_mjj, n_signal_region,
                                                               replace=len(background_mjj) < n_signal_region))}
    attrs = {"checkpoint": str(checkpoint_path), "data": str(data_path)}
    paths = {name: directory / f"{name}.h5" for name in names}
    missing = [name for name, path in paths.items() if not processed.is_complete(path)]
    checkpoint = checkpoints.load(checkpoint_path) if missing else None
    for name in missing:
        if name == GIVEN_JETS:
            given = signal_region_background.select(slice(0, min(n_signal_region, len(background_mjj) // 2)))
            _write_particles_given_jets(paths[name], checkpoint, config, given, attrs)
            continue
        n, mjj = plans[name]
        templates.write_templates(paths[name], checkpoint, config, data_path, SAMPLES[name][0], n,
                                  seed=config.sampling.seed, batch_size=config.sampling.batch_size, resume=True,
                                  attrs=attrs, mjj=mjj)
    return paths


def _write_particles_given_jets(path: Path, checkpoint, config, given: Events, attrs: dict) -> None:
    """New particles for the ``given`` events' own jets, ``sampling.batch_size`` events at a time
    (chunk k from the seed (sampling.seed, k)), into ``path``."""
    settings, npart = config.sampling, config.data.npart
    with atomic_output(path) as temporary, \
            processed.EventWriter(temporary, npart, {**attrs, "jets_given": True}) as writer:
        for start in range(0, len(given.mjj), settings.batch_size):
            writer.append(generation.particles_given_jets(
                checkpoint.model, checkpoint.stats, given.select(slice(start, start + settings.batch_size)), npart,
                settings.solver, settings.num_steps, [settings.seed, start // settings.batch_size],
                bucket_size=settings.bucket_size, jit_compile=settings.jit_compile))
            print(f"particles given the true SR jets: {len(writer)}/{len(given.mjj)} events", flush=True)


def _classify(mode: str, config, data_path: Path, generated: dict[str, Path], directory: Path,
              train: bool = True) -> list[tuple[int, np.ndarray, np.ndarray]] | None:
    """``[(seed, test scores, test labels), ...]`` of ``classifier.seeds`` trainings of ``mode``;
    score files already written are read instead of trained again. Without ``train``, None
    unless every seed's score file is there."""
    if mode == "two-sample":
        task = tasks.two_sample_task(config, generated["SB"], "SB", data_path=data_path)
    else:
        split = selection.split_signal_region(config, data_path, sources.extra_background_file(config))
        task = tasks.signal_region_task(mode, config, split, max(config.classifier.nsig), generated["SR"])
    runs = []
    for seed in range(config.classifier.seeds):
        path = directory / weak_supervision.method_name(task) / score_files.score_name(task.nsig, seed)
        if not path.exists():
            if not train:
                return None
            scores, record = weak_supervision.train_and_score(task, config, seed, distributed.init())
            score_files.write_scores(path, scores, task, seed, config, {**record, "data": str(data_path)})
        scores = score_files.read_scores(path)
        runs.append((seed, scores.score, scores.label))
    return runs


def _fidelity(data_path: Path, references: dict, generated: dict[str, Path], directory: Path,
              two_sample: list | None, config) -> dict[str, dict]:
    """Fidelity reports and feature plots of every generated sample against the background of its
    region (``references``: the held-out sideband, the true SR background); the sideband's
    with the ``two_sample`` classifier AUC when it was trained."""
    reports = {}
    for name, path in generated.items():
        region = SAMPLES[name][0]
        events = processed.load(path, 0, fidelity.MAX_EVENTS)
        reference, reference_path = references[region], directory / f"reference_{region}.h5"
        if name == GIVEN_JETS:  # only the SR background events whose jets were not given
            reference = reference.select(slice(len(events.mjj), None))
            reference_path = directory / f"reference_{name}.h5"
        if not reference_path.exists():
            with atomic_output(reference_path) as temporary, \
                    processed.EventWriter(temporary, config.data.npart, {"source": str(data_path)}) as writer:
                writer.append(reference)
        report = reports[name] = fidelity.compare(events, reference.select(slice(0, fidelity.MAX_EVENTS)))
        report.update(generated=str(path), reference=str(reference_path), region=region, sample=SAMPLES[name][1])
        if name == "SB" and two_sample:
            fidelity.add_two_sample_auc(report, "two-sample-SB", two_sample, config.evaluation.band_quantiles)
        fidelity.write(report, directory, f"fidelity_{name}")
        histograms = plotting.feature_histograms({config.generator: path}, reference_path, progress=False)
        plotting.save(plotting.feature_figure(histograms), directory, f"generated_vs_reference_{name}", ("png",))
    return reports


def _bands(runs: list, config) -> dict:
    """AUC and max SIC per seed, their median and band over the seeds."""
    quantiles = config.evaluation.band_quantiles
    aucs = [metrics.auc(scores, labels) for _, scores, labels in runs]
    sics = [metrics.max_sic(scores, labels, config.evaluation.min_background_events) for _, scores, labels in runs]
    return {"seeds": [seed for seed, _, _ in runs], "auc_per_seed": aucs, "max_sic_per_seed": sics,
            "auc": metrics.band(aucs, quantiles).to_dict(), "max_sic": metrics.band(sics, quantiles).to_dict()}


def _table(record: dict, config) -> str:
    def band(values: dict, digits: int) -> str:
        return f"{values['median']:.{digits}f} [{values['low']:.{digits}f}, {values['high']:.{digits}f}]"

    classifiers = record["classifiers"]
    if classifiers:
        seeds = len(next(iter(classifiers.values()))["seeds"])
        lines = [f"| quantity ({seeds} seed{'s' if seeds != 1 else ''}: median [16 %, 84 %]) | value |", "|---|---|"]
        if "two-sample" in classifiers:
            lines.append(f"| two-sample AUC, sideband | {band(classifiers['two-sample']['auc'], 3)} |")
        for mode in ("cwola", "idealized"):
            if mode in classifiers:
                lines += [f"| {mode} AUC, nsig={max(config.classifier.nsig)} | {band(classifiers[mode]['auc'], 3)} |",
                          f"| {mode} max SIC | {band(classifiers[mode]['max_sic'], 2)} |"]
        if {"cwola", "idealized"} <= set(classifiers):
            ratio = classifiers["cwola"]["max_sic"]["median"] / classifiers["idealized"]["max_sic"]["median"]
            lines.append(f"| cwola / idealized max SIC | {ratio:.2f} |")
    else:
        lines = ["| quantity (generator only: no classifier) | value |", "|---|---|"]
    for name, result in record["fidelity"].items():
        worst, sample = result["worst_ratio"], SAMPLES[name][1]
        label = fidelity.FEATURES[worst["feature"]][0]
        lines.append(f"| worst W1 / noise floor, {sample} | {worst['ratio']:.2f} ({label}) |")
        feature, shape = result["worst_by_jet_shape"]["feature"].split("/")
        lines.append(f"| worst W1 / noise floor by jet m/pT fifth (diagnostic), {sample} | "
                     f"{result['worst_by_jet_shape']['ratio']:.2f} ({fidelity.SHAPE_FEATURES[feature]}, "
                     f"fifth {int(shape) + 1} of 5 from the narrowest) |")
        lines.append(f"| FPD / KPD (jet features), {sample} | {result['fpd']['value']:.3g} ± "
                     f"{result['fpd']['error']:.2g} / {result['kpd']['value']:.3g} ± {result['kpd']['error']:.2g} |")
    training_record = record["training"]
    per_step = training_record["seconds_per_step"]
    lines.append(f"| training: epochs, minutes, time per step | {training_record['epochs']} of "
                 f"{config.training.epochs}, "
                 f"{(training_record['seconds'] or 0) / 60:.1f}, "
                 f"{'%.0f ms' % (1e3 * per_step) if per_step else 'n/a (not timed)'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
