"""Weak supervision: train the event classifier of one task and score its independent test set.

    scores, record = train_and_score(task, config, seed, context)
    path, auc = classify(config, mode, nsig, seed, generated=..., output=...)

``train_and_score`` trains the transformer classifier (``models.classifier``) on a task of
``workflow.tasks``; ``classify`` builds the task of a mode from the run's files, trains (the
CATHODE modes through ``workflow.cathode``), and writes the score file (``workflow.scores``).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from lhco_diffusion import distributed
from lhco_diffusion.config import Config, expand
from lhco_diffusion.data import dataset, processed, selection, sources, transforms
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import refuse_existing
from lhco_diffusion.models import classifier
from lhco_diffusion.workflow import cathode, scores, tasks
from lhco_diffusion.workflow.tasks import Task


def train_and_score(task: Task, config: Config, seed: int, context) -> tuple[np.ndarray, dict]:
    """Train a classifier on ``task``; return the (N,) test scores (on every rank) and a record.

    The score is the classifier's logit: it orders events like the sigmoid output without
    saturating in float32.

    80/20 (``classifier.validation_fraction``) train/validation split with ``seed``, inputs in
    the model space of ``data.transforms`` fitted on the training events, data sharded over the
    ranks of ``context`` (``distributed.init()``).
    """
    settings = config.classifier
    events, labels = tasks.events_and_labels(task)
    train_rows, validation_rows = tasks.training_split(task, settings.validation_fraction, seed)
    if min(len(train_rows), len(validation_rows)) < context.size:
        raise InputError(f"{len(events)} training events are too few for a {settings.validation_fraction:g} "
                         f"validation split over {context.size} workers")
    # the classifier sees the events as stored: the closure and the eta gap are the generators' representation
    classifier_transforms = dataclasses.replace(config.transforms, constituent_closure=False, jet_eta="absolute")
    stats = transforms.fit(events.select(train_rows), classifier_transforms, config.data.sideband)
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


def classify(config: Config, mode: str, seed: int, data_path: str | os.PathLike, nsig: int | None = None,
             generated: str | os.PathLike | None = None, reference: str | os.PathLike | None = None,
             region: str = "SR", output: str | os.PathLike | None = None, overwrite: bool = False,
             context: distributed.Context | None = None) -> tuple[Path, float] | None:
    """Train the classifier of ``mode`` (``tasks.MODES``) and write its score file.

    The file goes to ``output`` (default ``<run_dir>/scores/<method_name>/``) as
    ``scores.score_name(nsig, seed)``; an existing one is replaced only with ``overwrite``
    (checked before training). Under Horovod the full-phase-space modes train on every rank;
    the CATHODE modes run on rank 0 only. Returns (path, test AUC) on rank 0, else None.
    """
    context = context or distributed.current()
    if mode in tasks.HIGH_LEVEL_MODES:
        if not context.is_root:
            return None
        task = cathode.signal_region_task(mode, config, _split(config, data_path), nsig, data_path, seed)
        path = _score_path(config, task, seed, generated, output, overwrite)
        logits, record = cathode.train_and_score(task, config, seed)
    else:
        task = _task(config, mode, data_path, nsig, generated, reference, region)
        path = _score_path(config, task, seed, generated, output, overwrite)
        logits, record = train_and_score(task, config, seed, context)
    if not context.is_root:
        return None
    inputs = {"data": data_path, "generated": generated or "", "reference": reference or ""}
    auc = scores.write_scores(path, logits, task, seed, config, {**record, **inputs})
    return path, auc


def _score_path(config: Config, task: Task, seed: int, generated, output, overwrite: bool) -> Path:
    """Where the scores of this training go; ``InputError`` if the file exists without ``overwrite``."""
    directory = Path(output) if output else expand(config.paths.run_dir) / "scores" / method_name(task, generated)
    path = directory / scores.score_name(task.nsig, seed)
    refuse_existing(path, overwrite)
    return path


def method_name(task: Task, generated: str | os.PathLike | None = None) -> str:
    """The score directory of a training: the mode (two-sample: ``two-sample-<region>``), then for
    templates of the flow-matching generator ``-flow_matching`` (diffusion, the paper's first
    generator, adds nothing), and for templates made by partial diffusion their generation mode
    and t*, e.g. ``cwola-flow_matching-partial-sb-t0.4``, so ``evaluate`` shows every generator and
    generation method as its own curve."""
    name = task.mode if task.mode != "two-sample" else f"two-sample-{task.region}"
    if generated is not None:
        attrs = processed.read_attrs(generated)
        if attrs.get("generator", "diffusion") != "diffusion":
            name += f"-{attrs['generator']}"
        if attrs.get("mode", "noise") != "noise":
            name += f"-{attrs['mode']}-t{float(attrs['t_star']):g}"
    return name


def _task(config: Config, mode: str, data_path, nsig, generated, reference, region) -> Task:
    if mode == "two-sample":
        if generated is None:
            raise InputError("mode two-sample needs --generated FILE.h5")
        return tasks.two_sample_task(config, generated, region, reference, data_path)
    return tasks.signal_region_task(mode, config, _split(config, data_path), nsig, generated)


def _split(config: Config, data_path) -> selection.SignalRegionSplit:
    return selection.split_signal_region(config, data_path, sources.extra_background_file(config))
