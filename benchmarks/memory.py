"""Peak resident memory of each step of the search, on processed files of two sizes.

    python benchmarks/memory.py [--events 20000 80000] [--workdir DIR] [--steps-per-epoch 20]
                                [--n-generated 2000]

One configuration, configs/default.yaml (the demo's small networks, P = 30), with every size's
synthetic raw file generated into <workdir>/cache/<N> (not measured) and its run in
<workdir>/run_<N>. Each step then runs in a fresh Python process (this script again, with
--step) that calls the workflow function the pipeline calls and reports its peak resident
memory (ru_maxrss), and prepare that of its largest clustering worker, so no step inherits
another's memory (the other steps' only child is a helper PyTables forks while it is imported):

    prepare         sources.processed_file: raw -> fastjet -> processed (data.workers processes)
    train           training.train: one epoch of --steps-per-epoch batches
    sample          templates.write_templates: --n-generated SR events from noise
    SR background   the pipeline's _write_signal_region_background (the reference of the plots)
    classify        weak_supervision.classify: one idealized training of 2 epochs
    evaluate        evaluation.evaluate: that score directory, generated-vs-reference histograms

Memory is set by the events a step holds, not by how long it runs: one epoch of a few batches
holds the same sideband arrays and the same networks as the full training, and one classifier
training the same SR samples as each of the search's trainings. The "held" column says what a
step holds by design besides its fixed cost (Python, TensorFlow, the networks), in rows and in
MB as processed events at P: the sideband train and test splits (train), the SR samples of the
classifier trainings (classify: sizes fixed below so both files fill them), one read chunk
(streamed steps: they stop growing once a file exceeds ``processed.READ_CHUNK`` or
``plotting.READ_CHUNK`` events), one generated batch (sample). Prepare holds raw events (700
particles each), ``data.chunk_size`` per chunk, two chunks per worker in flight. The rest of the
peak RSS should not change between the two sizes; the steps that load TensorFlow vary by up to
about 70 MB from one run to the next at either size (sample: 1281 to 1351 MB in four runs).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the package of this checkout, not an installed one
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lhco_diffusion import config as config_module  # noqa: E402
from lhco_diffusion.config import expand  # noqa: E402
from lhco_diffusion.data import processed, selection, sources  # noqa: E402

STEPS = ("prepare", "train", "sample", "SR background", "classify", "evaluate")
# SR samples of the classifier training that a 20k-event demo file can fill (it holds about 3000
# SR background and 700 SR signal events), so both sizes train on equally many events.
CLASSIFIER = {"epochs": 2, "seeds": 1, "nsig": [200], "n_background": 700, "n_test_background": 600,
              "n_generated": 1400, "n_test_signal": 300}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[20_000, 80_000], help="raw synthetic events")
    parser.add_argument("--workdir", type=Path, help="keep raw files and runs here (default: a temporary dir)")
    parser.add_argument("--steps-per-epoch", type=int, default=20, help="training batches in the one epoch")
    parser.add_argument("--n-generated", type=int, default=2000, help="SR events to sample")
    parser.add_argument("--step", choices=("raw", *STEPS), help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        return _measure(args)
    with tempfile.TemporaryDirectory() as temporary:
        args.workdir = args.workdir or Path(temporary)
        reports = {}
        for size in args.events:
            shutil.rmtree(args.workdir / f"run_{size}", ignore_errors=True)
            _child(args, "raw", size)
            reports[size] = {step: _child(args, step, size) for step in STEPS}
            print(f"{size} raw events -> {reports[size]['prepare']['n_events']} processed: done", flush=True)
    _print_table(args, reports)
    return 0


def _child(args, step: str, size: int) -> dict:
    """Run ``step`` for the file of ``size`` events in a fresh process; its JSON report."""
    command = [sys.executable, __file__, "--step", step, "--size", str(size), "--workdir", str(args.workdir),
               "--steps-per-epoch", str(args.steps_per_epoch), "--n-generated", str(args.n_generated)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"step {step} on {size} events failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def _config(args) -> config_module.Config:
    overrides = {
        "paths.cache_dir": args.workdir / "cache" / str(args.size), "paths.run_dir": args.workdir / f"run_{args.size}",
        "data.synthetic_events": args.size, "training.epochs": 1,
        "training.steps_per_epoch": args.steps_per_epoch, "evaluation.formats": ["png"],
        **{f"classifier.{key}": value for key, value in CLASSIFIER.items()},
    }
    return config_module.load(ROOT / "configs" / "default.yaml",
                              [f"{key}={json.dumps(str(value) if isinstance(value, Path) else value)}"
                               for key, value in overrides.items()])


def _measure(args) -> int:
    """Run one step, then report its peak RSS, its largest child's, and the rows it holds."""
    warnings.simplefilter("ignore")  # the size warnings of small samples are expected here
    config = _config(args)
    run_dir = expand(config.paths.run_dir)
    files = {"data": None if args.step in ("raw", "prepare") else sources.processed_file(config, progress=False),
             "generated": run_dir / "samples" / "SR.h5", "reference": run_dir / "samples" / "SR_background.h5",
             "scores": run_dir / "scores", "evaluation": run_dir / "evaluation"}
    _STEP_FUNCTIONS[args.step](config, files, args)
    report = {"main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if args.step != "raw":
        files["data"] = sources.processed_file(config, progress=False)
        report |= _held(args.step, config, files)
    print(json.dumps(report))
    return 0


def _raw(config, files, args) -> None:
    sources.raw_file(config, progress=False)


def _prepare(config, files, args) -> None:
    shutil.rmtree(expand(config.paths.cache_dir) / "processed", ignore_errors=True)  # prepare it again
    sources.processed_file(config, progress=False)


def _train(config, files, args) -> None:
    from lhco_diffusion.workflow import training

    training.train(config)


def _sample(config, files, args) -> None:
    from lhco_diffusion.workflow import checkpoints, templates, training

    checkpoint = checkpoints.load(training.run_paths(config)["best"])
    templates.write_templates(files["generated"], checkpoint, config, files["data"], "SR",
                              args.n_generated, config.sampling.seed, config.sampling.batch_size,
                              progress=False)


def _signal_region_background(config, files, args) -> None:
    from lhco_diffusion.commands import pipeline

    pipeline._write_signal_region_background(config, files["data"], files["reference"])


def _classify(config, files, args) -> None:
    from lhco_diffusion import distributed
    from lhco_diffusion.workflow import weak_supervision

    weak_supervision.classify(config, "idealized", 0, files["data"], CLASSIFIER["nsig"][0],
                              output=files["scores"] / "idealized", context=distributed.init())


def _evaluate(config, files, args) -> None:
    from lhco_diffusion.workflow import evaluation

    evaluation.evaluate(config, files["scores"], files["evaluation"], files["generated"], files["reference"])


_STEP_FUNCTIONS = {"raw": _raw, "prepare": _prepare, "train": _train, "sample": _sample,
                   "SR background": _signal_region_background, "classify": _classify, "evaluate": _evaluate}


def _held(step: str, config, files) -> dict:
    """{"n_events": processed events, "rows": rows the step holds by design, "mb": their size,
    "file_mb": the size of the whole processed file in memory}."""
    from lhco_diffusion.workflow import plotting

    data = files["data"]
    n_events = processed.count(data)
    event_bytes = sum(array.nbytes for array in vars(processed.load(data, 0, 1)).values() if array is not None)
    if step == "prepare":
        rows = config.data.chunk_size * 2 * config.data.workers  # raw events, not processed ones
    elif step == "train":
        rows = sum(len(selection.sideband_rows(data, config.data)[split]) for split in ("train", "test"))
    elif step == "sample":
        rows = config.sampling.batch_size
    elif step == "SR background":
        rows = min(n_events, processed.READ_CHUNK)
    elif step == "classify":
        split = selection.split_signal_region(config, data, sources.extra_background_file(config))
        rows = sum(len(part) for part in vars(split).values())
    else:  # evaluate: the test set of the score file, one histogram chunk of the larger file
        largest = max(processed.count(files["generated"]), processed.count(files["reference"]))
        rows = min(largest, plotting.READ_CHUNK) + config.classifier.n_test_background + config.classifier.n_test_signal
    mb = None if step == "prepare" else rows * event_bytes / 2**20
    return {"n_events": n_events, "rows": rows, "mb": mb, "file_mb": n_events * event_bytes / 2**20}


def _print_table(args, reports: dict) -> None:
    sizes = list(reports)
    first, last = sizes[0], sizes[-1]
    header = ["step", *(f"{reports[size]['prepare']['n_events']} ev: peak RSS MB" for size in sizes),
              "ratio", *(f"held at {size // 1000}k: rows (MB)" for size in sizes)]
    lines = [header]
    for step in STEPS:
        for label, key in ((step, "main_mb"), (f"{step}: largest child", "child_mb")):
            values = [reports[size][step][key] for size in sizes]
            if key == "child_mb" and step != "prepare":  # the others' only child is PyTables' import helper
                continue
            held = [reports[size][step] for size in sizes]
            held = [f"{h['rows']}" + ("" if h["mb"] is None else f" ({h['mb']:.1f})") for h in held]
            lines.append([label, *(f"{value:.0f}" for value in values), f"{values[-1] / values[0]:.2f}",
                          *(held if key == "main_mb" else ["" for _ in sizes])])
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    print(f"\npeak RSS per step (fresh process each), configs/default.yaml, P=30, raw events {first} -> {last}")
    for index, line in enumerate(lines):
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths)))
        if index == 0:
            print("-|-".join("-" * width for width in widths))
    print("prepare holds raw events (700 particles each); the other rows are processed events.")
    whole = " -> ".join(f"{reports[size]['prepare']['file_mb']:.1f} MB" for size in sizes)
    print(f"a whole processed file in memory: {whole}; a step that read it at once would grow by that")


if __name__ == "__main__":
    sys.exit(main())
