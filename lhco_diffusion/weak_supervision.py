"""The classifier trainings of the anomaly search: their training sets, the training, their scores.

Every mode trains the classifier to tell class 0 from class 1 and scores an independent test set:

    mode        class 0 (template)              class 1                         test set (truth)
    cwola       generated SR background         SR data = background + nsig     SR signal (1) and
    idealized   true extra SR background        signal injected                 SR background (0)
    supervised  SR background                   nsig SR signal                  (the same for all 3)
    two-sample  generated events (SR or SB)     reference events                held-out generated (0)
                                                                                and reference (1)

The CATHODE baseline modes (``lhco_diffusion.high_level``) train on four high-level features
instead of whole events, on the same SR split and test set: ``cathode`` (a flow's SR template
versus SR data, like cwola), ``idealized-hl`` and ``supervised-hl``.

The signal-region events of the processed file are split once, with ``data.seed``, into
disjoint parts (``split_signal_region``):

    background  "test" (classifier.n_test_background), "data" (n_background), "extra" (idealized)
    signal      "test" (n_test_signal), "injection" pool (largest classifier.nsig)

With ``data.extra_background`` set, "test" and "extra" background come from that file and all
of the main file's SR background is available for "data". The split does not depend on the
mode, the injection or the classifier seed, so every score file of a mode shares its test set;
its identity is recorded as a digest. When a file holds fewer events than configured, the test
and data (or test and injection) parts shrink in proportion and a ``SampleSizeWarning`` says
so; "extra" gets what is left. The template class (generated or extra background) has
``classifier.oversampling`` events per pseudo-data background event (CATHODE's oversampling;
the paper trains 200k generated against 100k data events: 2), at most ``classifier.n_generated``.

Score files (HDF5): ``score`` (N,) float32 classifier logit, ``label`` (N,) int8 truth and
``mjj`` (N,) [GeV] of the test events, and attrs with mode, region, nsig, seed, AUC, test digest,
counts, the configuration, the package version and ``complete`` (written last; ``read_scores``
refuses a file without it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import warnings
from pathlib import Path

import h5py
import numpy as np

from lhco_diffusion import config as config_module
from lhco_diffusion import distributed, metrics
from lhco_diffusion.config import Config
from lhco_diffusion.data import dataset, processed, regions, sources, transforms
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output

HIGH_LEVEL_MODES = ("cathode", "idealized-hl", "supervised-hl")  # lhco_diffusion.high_level
MODES = ("cwola", "idealized", "supervised", "two-sample", *HIGH_LEVEL_MODES)
REGIONS = ("SR", "SB")
READ_CHUNK = 50_000  # events read from a file at a time
TWO_SAMPLE_TEST_FRACTION = 0.25  # largest share of either sample held out for the two-sample test


class SampleSizeWarning(UserWarning):
    """A file holds fewer events than the configuration asks for; the sample was scaled down."""


@dataclasses.dataclass
class SignalRegionSplit:
    """Disjoint signal-region samples (see the module docstring)."""

    data_background: Events
    extra_background: Events
    test_background: Events
    injection_signal: Events
    test_signal: Events


@dataclasses.dataclass
class Task:
    """One classifier training: class 0 and class 1 events, and the test set with truth labels."""

    mode: str
    region: str
    class0: Events
    class1: Events
    test: Events
    nsig: int  # signal events in class 1 (cwola, idealized, supervised), else 0


# ---------------------------------------------------------------------------- training sets


def split_signal_region(config: Config, data_path: str | os.PathLike,
                        extra_path: str | os.PathLike | None = None) -> SignalRegionSplit:
    """Split the SR events of ``data_path`` (and ``extra_path``, SR background only) as above."""
    settings, npart, seed = config.classifier, config.data.npart, config.data.seed
    mjj, label = _column(data_path, "mjj"), _column(data_path, "label")
    in_signal_region = regions.signal_region_mask(mjj, config.data)
    background_rows = np.flatnonzero(in_signal_region & (label == 0))
    signal_rows = np.flatnonzero(in_signal_region & (label == 1))
    n_extra = min(settings.n_generated, settings.oversampling * settings.n_background)
    largest_injection = max(settings.nsig, default=0)

    signal = _split(np.random.default_rng([seed, 1]).permutation(signal_rows),
                    {"test": settings.n_test_signal, "injection": largest_injection}, {}, "SR signal")
    background = np.random.default_rng([seed, 0]).permutation(background_rows)
    if extra_path is None:
        background = _split(background, {"test": settings.n_test_background, "data": settings.n_background},
                            {"extra": n_extra}, "SR background")
        sources_of = dict.fromkeys(background, data_path)
    else:
        extra_rows = np.flatnonzero(regions.signal_region_mask(_column(extra_path, "mjj"), config.data))
        background = _split(background, {"data": settings.n_background}, {}, "SR background") | _split(
            np.random.default_rng([seed, 2]).permutation(extra_rows), {"test": settings.n_test_background},
            {"extra": n_extra}, "extra SR background")
        sources_of = {"test": extra_path, "extra": extra_path, "data": data_path}
    parts = {(sources_of[name], name): rows for name, rows in background.items()}
    parts |= {(data_path, f"{name}_signal"): rows for name, rows in signal.items()}
    read = _read_parts(parts, npart)
    return SignalRegionSplit(
        data_background=read["data"], extra_background=read["extra"], test_background=read["test"],
        injection_signal=read["injection_signal"], test_signal=read["test_signal"],
    )


def signal_region_task(mode: str, config: Config, split: SignalRegionSplit, nsig: int | None = None,
                       generated_path: str | os.PathLike | None = None) -> Task:
    """The training set of ``cwola``, ``idealized`` or ``supervised`` on ``split``.

    ``nsig`` signal events (default: the whole injection pool) join class 1; cwola reads its
    template from the generated events of ``generated_path`` that fall in the SR.
    """
    signal = injected_signal(split, nsig)
    nsig = len(signal)
    settings = config.classifier
    n_template = min(settings.oversampling * len(split.data_background), settings.n_generated)
    if mode == "cwola":
        if generated_path is None:
            raise InputError("mode cwola needs --generated FILE.h5 with generated SR background")
        template = _region_events(generated_path, "SR", config, limit=n_template)
        class0, class1 = template, Events.concatenate([split.data_background, signal])
    elif mode == "idealized":
        if len(split.extra_background) == 0:
            raise InputError("no SR background is left for the idealized template; set data.extra_background "
                             "or lower classifier.n_background and n_test_background")
        n_extra = _warn_if_fewer(n_template, len(split.extra_background), "extra SR background events")
        class0 = split.extra_background.select(slice(0, n_extra))
        class1 = Events.concatenate([split.data_background, signal])
    elif mode == "supervised":
        class0, class1 = split.data_background, signal
    else:
        raise InputError(f"mode {mode} is not a signal-region mode (cwola, idealized, supervised)")
    test = Events.concatenate([split.test_background, split.test_signal])
    return Task(mode, "SR", class0, class1, test, nsig)


def injected_signal(split: SignalRegionSplit, nsig: int | None = None) -> Events:
    """The first ``nsig`` events of the injection pool (default: all of it); ``InputError`` if
    it holds fewer."""
    pool = split.injection_signal
    nsig = len(pool) if nsig is None else nsig
    if not 0 <= nsig <= len(pool):
        raise InputError(f"--nsig {nsig} exceeds the {len(pool)} SR signal events set aside for "
                         "injection; add it to classifier.nsig or give fewer")
    return pool.select(slice(0, nsig))


def two_sample_task(config: Config, generated_path: str | os.PathLike, region: str,
                    reference_path: str | os.PathLike | None = None,
                    data_path: str | os.PathLike | None = None) -> Task:
    """Generated (class 0) versus reference (class 1) events of ``region`` ("SR" or "SB").

    The reference is ``reference_path``, or else the background of ``data_path`` in the region
    (in the SB only the validation split, which the generative models never saw). Up to
    ``classifier.n_test_background`` events of each sample (at most a quarter) are held out as
    the test set, chosen with ``data.seed``.
    """
    if region not in REGIONS:
        raise InputError(f"region must be SR or SB, not {region}")
    generated = _labelled(_region_events(generated_path, region, config), 0)
    if reference_path is not None:
        reference = _region_events(reference_path, region, config)
    elif data_path is not None:
        reference = _reference_background(data_path, region, config)
    else:
        raise InputError("mode two-sample needs --reference FILE.h5 or a processed data file")
    reference = _labelled(reference, 1)
    n_test = min(len(generated), len(reference)) * TWO_SAMPLE_TEST_FRACTION
    n_test = _warn_if_fewer(config.classifier.n_test_background, int(n_test), "two-sample test events")
    if n_test < 1:
        raise InputError(f"too few generated ({len(generated)}) or reference ({len(reference)}) "
                         f"events in the {region} for a two-sample test")
    rng = np.random.default_rng([config.data.seed, 3])
    parts = [_held_out(events, n_test, rng) for events in (generated, reference)]
    test = Events.concatenate([part[1] for part in parts])
    return Task("two-sample", region, parts[0][0], parts[1][0], test, 0)


def extra_background_file(config: Config) -> Path | None:
    """The processed extra SR background (``data.extra_background``), prepared once if it is raw."""
    extra = config.data.extra_background
    if not extra:
        return None
    path = config_module.expand(extra)
    if not path.is_file():
        raise InputError(f"data.extra_background file {path} does not exist; see data/README")
    try:
        processed.count(path)
        return path
    except InputError:  # a raw LHCO file: cluster it like the main one
        data = dataclasses.replace(config.data, raw=str(path), processed=None)
        return sources.processed_file(config.replace(data=data))


def training_split(task: Task, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of ``events_and_labels(task)``, shuffled with ``seed``."""
    n = len(task.class0) + len(task.class1)
    order = np.random.default_rng(seed).permutation(n)
    n_validation = int(round(validation_fraction * n))
    return order[n_validation:], order[:n_validation]


def events_and_labels(task: Task) -> tuple[Events, np.ndarray]:
    """All training events (class 0 first) and their (N,) class labels."""
    labels = np.concatenate([np.zeros(len(task.class0)), np.ones(len(task.class1))]).astype(np.float32)
    return Events.concatenate([task.class0, task.class1]), labels


def events_digest(events: Events) -> str:
    """A short fingerprint of a test set (its jets, mjj and labels): equal digests, equal test sets."""
    digest = hashlib.sha256()
    for array in (events.jets, events.mjj, events.label):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- training


def train_and_score(task: Task, config: Config, seed: int, context) -> tuple[np.ndarray, dict]:
    """Train a classifier on ``task``; return the (N,) test scores (on every rank) and a record.

    The score is the classifier's logit: it orders events like the sigmoid output without
    saturating in float32.

    80/20 (``classifier.validation_fraction``) train/validation split with ``seed``, inputs in
    the model space of ``data.transforms`` fitted on the training events, data sharded over the
    ranks of ``context`` (``distributed.init()``).
    """
    import tensorflow as tf

    from lhco_diffusion.models import classifier

    settings = config.classifier
    events, labels = events_and_labels(task)
    train_rows, validation_rows = training_split(task, settings.validation_fraction, seed)
    if min(len(train_rows), len(validation_rows)) < context.size:
        raise InputError(f"{len(events)} training events are too few for a {settings.validation_fraction:g} "
                         f"validation split over {context.size} workers")
    stats = transforms.fit(events.select(train_rows), config.transforms, config.data.sideband)
    inputs = transforms.to_model(stats, events)
    tf.keras.utils.set_random_seed(seed)
    model = classifier.build(config.classifier, events.npart, wrap_tape=distributed.wrap_tape)
    pad = config.data.pad_to_longest

    def batches(rows, shuffle):
        return classifier.batches(inputs.select(rows), labels[rows], settings.batch_size, context.rank,
                                  context.size, shuffle=shuffle, seed=seed, pad_to_longest=pad)

    history = classifier.fit(
        model, batches(train_rows, True), batches(validation_rows, False), settings,
        steps_per_epoch=dataset.steps_per_epoch(len(train_rows), settings.batch_size, context.size),
        callbacks=[distributed.broadcast_callback(), distributed.average_metrics_callback()],
        verbose=context.is_root,
    )
    test_inputs = transforms.to_model(stats, task.test)
    local_rows = np.array_split(np.arange(len(task.test)), context.size)[context.rank]
    local_scores = classifier.predict_logits(model, test_inputs.select(local_rows), settings.batch_size)
    scores = distributed.allgather(local_scores)
    validation_loss = history.history["val_loss"]
    record = {
        "epochs_trained": len(validation_loss),
        "best_validation_loss": float(np.min(validation_loss)),
        "n_train": len(train_rows), "n_validation": len(validation_rows),
        "n_class0": len(task.class0), "n_class1": len(task.class1),
        "n_weights": int(model.count_params()),
    }
    return np.asarray(scores, np.float32), record


# ---------------------------------------------------------------------------- score files


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


# ---------------------------------------------------------------------------- reading events


def _column(path: str | os.PathLike, name: str) -> np.ndarray:
    """One per-event dataset (mjj or label) of a processed file, without reading the particles."""
    n = processed.count(path)
    with h5py.File(path, "r") as file:
        return file[name][:n]


def _read_rows(path: str | os.PathLike, rows: np.ndarray, npart: int) -> Events:
    """The events at ``rows`` of a processed file, in the order of ``rows``, with P = ``npart``.

    Reads chunk by chunk, so memory holds one chunk plus the selected events.
    """
    rows = np.asarray(rows, np.int64)
    order = np.argsort(rows)
    ordered = rows[order]
    blocks = []
    for chunk in np.unique(ordered // READ_CHUNK):
        inside = ordered[(ordered >= chunk * READ_CHUNK) & (ordered < (chunk + 1) * READ_CHUNK)]
        block = processed.load(path, int(inside[0]), int(inside[-1]) + 1, npart)
        blocks.append(block.select(inside - inside[0]))
    if not blocks:
        blocks = [processed.load(path, 0, 0, npart)]
    return _padded(Events.concatenate(blocks), npart).select(np.argsort(order))


def _read_parts(parts: dict[tuple, np.ndarray], npart: int) -> dict[str, Events]:
    """``{(path, name): rows}`` -> ``{name: Events}``, reading each file once."""
    read = {}
    for path in dict.fromkeys(path for path, _ in parts):
        names = [name for source, name in parts if source == path]
        blocks = [parts[path, name] for name in names]
        events = _read_rows(path, np.concatenate(blocks), npart)
        edges = np.cumsum([len(block) for block in blocks])[:-1]
        for name, rows in zip(names, np.split(np.arange(len(events)), edges)):
            read[name] = events.select(rows)
    return read


def _padded(events: Events, npart: int) -> Events:
    """``events`` with zero particle slots appended up to ``npart``."""
    missing = npart - events.npart
    if missing <= 0:
        return events
    particles = np.pad(events.particles, ((0, 0), (0, 0), (0, missing), (0, 0)))
    return dataclasses.replace(events, particles=particles)


def _region_mask(mjj: np.ndarray, region: str, config: Config) -> np.ndarray:
    if region == "SR":
        return regions.signal_region_mask(mjj, config.data)
    return regions.sideband_mask(mjj, config.data)


def _region_events(path: str | os.PathLike, region: str, config: Config, limit: int | None = None) -> Events:
    """The events of ``path`` in ``region`` (the first ``limit`` of them, with a warning if fewer)."""
    rows = np.flatnonzero(_region_mask(_column(path, "mjj"), region, config))
    if limit is not None:
        rows = rows[:_warn_if_fewer(limit, len(rows), f"events of {Path(path).name} in the {region}")]
    if len(rows) == 0:
        raise InputError(f"{path} holds no events in the {region}")
    return _read_rows(path, rows, config.data.npart)


def _reference_background(data_path: str | os.PathLike, region: str, config: Config) -> Events:
    """Background of the data file in ``region``; in the SB its validation split only."""
    mjj, label = _column(data_path, "mjj"), _column(data_path, "label")
    rows = np.flatnonzero(_region_mask(mjj, region, config) & (label == 0))
    if region == "SB" and len(rows):
        split = regions.sideband_splits(len(rows), config.data.sideband_fractions, config.data.seed)
        rows = rows[split["validation"]]
    if len(rows) == 0:
        raise InputError(f"{data_path} holds no background events in the {region}")
    return _read_rows(data_path, rows, config.data.npart)


def _split(rows: np.ndarray, essential: dict[str, int], optional: dict[str, int],
           what: str) -> dict[str, np.ndarray]:
    """Consecutive blocks of ``rows``: the ``essential`` sizes (all scaled down alike, with a
    warning, if rows run short), then the ``optional`` ones from what is left."""
    total = sum(essential.values())
    scale = 1.0 if total <= len(rows) else len(rows) / total
    if scale < 1.0:
        warnings.warn(f"only {len(rows)} {what} events for the {total} configured "
                      f"({', '.join(f'{k} {v}' for k, v in essential.items())}); using {scale:.1%} of each",
                      SampleSizeWarning, stacklevel=3)
    sizes = {name: int(np.floor(n * scale)) for name, n in essential.items()}
    for name, wanted in optional.items():
        sizes[name] = min(wanted, len(rows) - sum(sizes.values()))
    blocks = np.split(rows, np.cumsum(list(sizes.values())))
    return dict(zip(sizes, blocks))


def _warn_if_fewer(wanted: int, available: int, what: str) -> int:
    if available < wanted:
        warnings.warn(f"only {available} {what} for the {wanted} configured; using {available}",
                      SampleSizeWarning, stacklevel=3)
    return min(wanted, available)


def _held_out(events: Events, n_test: int, rng: np.random.Generator) -> tuple[Events, Events]:
    """(training part, ``n_test`` held-out events) of ``events``, chosen at random."""
    order = rng.permutation(len(events))
    return events.select(np.sort(order[n_test:])), events.select(np.sort(order[:n_test]))


def _labelled(events: Events, label: int) -> Events:
    """``events`` with every truth label set to ``label`` (generated 0, reference 1)."""
    return dataclasses.replace(events, label=np.full(len(events), label, np.int8))


def _decoded(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
