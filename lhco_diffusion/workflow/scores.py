"""Score files: the classifier scores of one training on its test set, and how they were made.

    write_scores(path, score, task, seed, config, attrs) -> AUC
    read_scores(path) -> ScoreFile
    collect_scores(directory) -> {"cwola": [ScoreFile, ...], "two-sample-SB": [...]}

A score file (HDF5) holds ``score`` (N,) float32 classifier logit, ``label`` (N,) int8 truth and
``mjj`` (N,) [GeV] of the test events, and attrs with mode, region, nsig, seed, AUC, test-set
digest, counts, the configuration, the package version and ``complete`` (written last;
``read_scores`` refuses a file without it). No TensorFlow: ``evaluate`` reads
these without loading it.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from pathlib import Path

import h5py
import numpy as np

from lhco_diffusion.config import Config
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output
from lhco_diffusion.workflow import metrics
from lhco_diffusion.workflow.tasks import Task, events_digest


@dataclasses.dataclass
class ScoreFile:
    """The classifier scores of one training on its test set, and how they were made."""

    path: Path
    score: np.ndarray  # (N,) float32
    label: np.ndarray  # (N,) int8 truth: 1 signal (reference), 0 background (generated)
    mjj: np.ndarray  # (N,) GeV
    attrs: dict

    @property
    def nsig(self) -> int:
        return int(self.attrs["nsig"])

    @property
    def seed(self) -> int:
        return int(self.attrs["seed"])


def score_name(nsig: int, seed: int) -> str:
    """File name of the scores of one training: ``nsig<N>_seed<S>.h5``."""
    return f"nsig{nsig}_seed{seed}.h5"


def write_scores(path: str | os.PathLike, score: np.ndarray, task: Task, seed: int, config: Config,
                 attrs: dict) -> float:
    """Write the test-set scores of ``task`` (atomically) and return their AUC.

    Besides ``attrs`` (training record, input files) the file records the mode, region, nsig,
    seed, AUC, test-set digest and sizes, the full configuration and the package version.
    """
    auc = metrics.auc(score, task.test.label)
    attrs = {
        "mode": task.mode, "region": task.region, "nsig": task.nsig, "seed": seed, "auc": auc,
        "test_digest": events_digest(task.test), "n_test_signal": int(np.sum(task.test.label == 1)),
        "n_test_background": int(np.sum(task.test.label == 0)),
        **{key: str(value) if isinstance(value, Path) else value for key, value in attrs.items()},
        "config": config.to_yaml(), "code_version": importlib.metadata.version("lhco_diffusion"),
        "complete": True,
    }
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as file:
        file.create_dataset("score", data=np.asarray(score, np.float32))
        file.create_dataset("label", data=task.test.label.astype(np.int8))
        file.create_dataset("mjj", data=task.test.mjj.astype(np.float32))
        for key, value in attrs.items():
            file.attrs[key] = value
    return auc


def read_scores(path: str | os.PathLike) -> ScoreFile:
    """A score file written by ``write_scores``; ``InputError`` for anything else."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            arrays = [file[name][:] for name in ("score", "label", "mjj")]
            attrs = {key: _decoded(value) for key, value in file.attrs.items()}
    except (OSError, KeyError):
        raise InputError(f"{path} is not a score file written by lhco_diffusion.classify") from None
    missing = {"mode", "nsig", "seed", "test_digest", "complete"} - set(attrs)
    if missing:
        raise InputError(f"{path} lacks the score metadata {', '.join(sorted(missing))}; run classify again")
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise InputError(f"{path} is damaged: its score, label and mjj differ in length")
    if not np.all(np.isfinite(arrays[0])):
        raise InputError(f"{path} holds NaN or infinite scores (a diverged classifier); run classify again")
    return ScoreFile(path, *arrays, attrs)


def collect_scores(directory: str | os.PathLike,
                   expected_seeds: int | None = None) -> dict[str, list[ScoreFile]]:
    """Score files grouped by mode directory: ``{"cwola": [...], "two-sample-SB": [...]}``.

    ``directory`` holds mode directories of score files, or score files itself. Raises
    ``InputError`` for an empty mode directory, files of one mode scored on different test sets,
    an injection lacking a seed that another has, fewer seeds than ``expected_seeds``, or two
    files of the same injection and seed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"score directory {directory} does not exist")
    groups = {directory.name: directory} if any(directory.glob("*.h5")) else {
        child.name: child for child in sorted(directory.iterdir()) if child.is_dir()}
    if not groups:
        raise InputError(f"{directory} holds neither score files nor mode directories")
    collected = {}
    for name, folder in groups.items():
        files = [read_scores(path) for path in sorted(folder.glob("*.h5"))]
        if not files:
            raise InputError(f"mode directory {folder} holds no score files (*.h5)")
        _check_group(name, files, expected_seeds)
        collected[name] = sorted(files, key=lambda f: (f.nsig, f.seed))
    return collected


def _check_group(name: str, files: list[ScoreFile], expected_seeds: int | None) -> None:
    modes = {f.attrs["mode"] for f in files}
    if len(modes) > 1:
        raise InputError(f"{name} mixes score files of modes {', '.join(sorted(modes))}")
    digests = {}
    for score_file in files:
        digests.setdefault(score_file.attrs["test_digest"], score_file.path.name)
    if len(digests) > 1:
        first, second = list(digests.values())[:2]
        raise InputError(f"score files in {name} come from different test sets ({first} and {second}); "
                         "keep one test set per mode directory")
    seeds_of = {}
    for score_file in files:
        seeds = seeds_of.setdefault(score_file.nsig, set())
        if score_file.seed in seeds:
            raise InputError(f"{name} holds two score files for nsig {score_file.nsig} and seed "
                             f"{score_file.seed}")
        seeds.add(score_file.seed)
    every_seed = set().union(*seeds_of.values())
    for nsig, seeds in sorted(seeds_of.items()):
        if seeds != every_seed:
            missing = ", ".join(map(str, sorted(every_seed - seeds)))
            raise InputError(f"{name}: nsig {nsig} lacks seed(s) {missing} that other injections have")
    if expected_seeds is not None and len(every_seed) < expected_seeds:
        raise InputError(f"{name} has {len(every_seed)} seed(s) per injection but classifier.seeds asks for "
                         f"{expected_seeds}; train the missing seeds or pass --set classifier.seeds="
                         f"{len(every_seed)}")


def _decoded(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
