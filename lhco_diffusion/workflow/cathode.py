"""The low-dimensional CATHODE baseline: weakly supervised classifiers on four high-level features.

    task = cathode.signal_region_task("cathode", config, split, nsig, data_path)
    scores, record = cathode.train_and_score(task, config, seed)
    scores.write_scores(path, scores, task, seed, config, record)

Features (``data.substructure.FEATURES``): the lighter jet's mass mj1 [GeV], mj2 - mj1 [GeV] and
the two jets' tau21 (jets ordered by mass). Modes, on the SR split of ``data.selection``:

    mode           class 0 (template)                              class 1
    cathode        flow samples in the SR (``cathode_flow``,        SR data = data background
                   mjj from a KDE of this SR data,                   + nsig signal
                   flow.oversampling per SR data event)
    idealized-hl   the idealized mode's true extra SR background    as idealized
    supervised-hl  SR background                                   nsig SR signal

The test set is that of the full-phase-space modes (same events, same digest), so ``evaluate``
draws the baseline beside them.

Classifier (``flow.classifier``): ``mlp`` is CATHODE's, 3 hidden layers of 64 ReLU units on
standardised features (fitted on the training rows), Adam at ``classifier.learning_rate``, batches
of ``classifier.batch_size``, up to ``classifier.epochs``, early stopping on the validation loss
(``classifier.validation_fraction``, ``classifier.early_stopping_patience``, best weights kept);
``hgb`` is scikit-learn's HistGradientBoostingClassifier with its own early stopping on a
validation share of the same size. Both weight the classes to equal total weight (the template
is oversampled), and both score with the class-1 logit.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from lhco_diffusion.config import Config
from lhco_diffusion.data import selection
from lhco_diffusion.data.mjj import MjjSampler
from lhco_diffusion.data.processed import Events
from lhco_diffusion.data.selection import SignalRegionSplit
from lhco_diffusion.data.substructure import cathode_features
from lhco_diffusion.errors import InputError
from lhco_diffusion.workflow import cathode_flow as flow, tasks

HIDDEN_UNITS = (64, 64, 64)  # CATHODE's classifier
HGB_MAX_ITERATIONS = 500  # boosting rounds before early stopping


@dataclasses.dataclass
class FeatureTask:
    """One classifier training on high-level features: class 0 (N0, 4), class 1 (N1, 4), and the
    test events (whose features ``train_and_score`` computes). ``scores.write_scores``
    and ``tasks.training_split`` take it like a ``tasks.Task``."""

    mode: str
    region: str
    class0: np.ndarray
    class1: np.ndarray
    test: Events | None
    nsig: int
    attrs: dict = dataclasses.field(default_factory=dict)  # recorded in the score file (flow ...)


def signal_region_task(mode: str, config: Config, split: SignalRegionSplit,
                       nsig: int | None, data_path: str | os.PathLike, seed: int = 0,
                       verbose: bool = True) -> FeatureTask:
    """The training set of ``cathode``, ``idealized-hl`` or ``supervised-hl`` (module docstring).

    cathode trains the flow on the sideband of ``data_path`` (or reuses the one saved by an
    earlier call) and draws its template with ``seed``.
    """
    if mode not in tasks.HIGH_LEVEL_MODES:
        raise InputError(f"mode {mode} is not a high-level mode ({', '.join(tasks.HIGH_LEVEL_MODES)})")
    if mode != "cathode":
        full = tasks.signal_region_task(mode.removesuffix("-hl"), config, split, nsig)
        return FeatureTask(mode, "SR", cathode_features(full.class0), cathode_features(full.class1), full.test,
                           full.nsig)
    signal = tasks.injected_signal(split, nsig)
    data_events = Events.concatenate([split.data_background, signal])
    data = cathode_features(data_events)
    trained = flow.trained_flow(config, data_path, verbose)
    n_template = config.flow.oversampling * len(data)
    if config.data.kde_source == "signal_region":  # this injection's SR data, as CATHODE does
        density = MjjSampler.fit(data_events.mjj, config.data.kde_bandwidth)
    else:
        density = selection.mjj_density(data_path, config)
    mjj = density.sample(n_template, config.data.signal_region, seed)
    test = Events.concatenate([split.test_background, split.test_signal])
    return FeatureTask("cathode", "SR", trained.sample(mjj, seed), data, test, len(signal),
                       {"flow": str(trained.directory), **{f"flow_{k}": v for k, v in trained.record.items()}})


def train_and_score(task: FeatureTask, config: Config, seed: int, verbose: bool = True) -> tuple[np.ndarray, dict]:
    """Train ``flow.classifier`` on ``task``; return the (N,) float32 test logits and a record."""
    scores, record = fit_and_score(task.class0, task.class1, cathode_features(task.test), config, seed, verbose)
    return scores, {**record, **task.attrs}


def fit_and_score(class0: np.ndarray, class1: np.ndarray, test_features: np.ndarray, config: Config, seed: int,
                  verbose: bool = False) -> tuple[np.ndarray, dict]:
    """(M,) float32 class-1 logits of test_features (M, 4) and a record, from ``flow.classifier``
    trained on class0 (N0, 4) versus class1 (N1, 4) with the validation split of
    ``tasks.training_split`` (shuffled with ``seed``)."""
    task = FeatureTask("", "", class0, class1, None, 0)
    train_rows, validation_rows = tasks.training_split(task, config.classifier.validation_fraction, seed)
    if min(len(train_rows), len(validation_rows), len(class0), len(class1)) == 0:
        raise InputError(f"{len(class0)} template and {len(class1)} data events are too few to train and "
                         "validate a classifier")
    features = np.concatenate([class0, class1]).astype(np.float32)
    labels = np.concatenate([np.zeros(len(class0)), np.ones(len(class1))]).astype(np.float32)
    fit = _fit_hgb if config.flow.classifier == "hgb" else _fit_mlp
    scores, record = fit(features, labels, train_rows, validation_rows, test_features, config, seed, verbose)
    record |= {"classifier": config.flow.classifier, "n_train": len(train_rows),
               "n_validation": len(validation_rows), "n_class0": len(class0), "n_class1": len(class1)}
    return np.asarray(scores, np.float32), record


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """(N,) weights giving class 0 and class 1 equal total weight, mean weight 1."""
    counts = np.bincount(labels.astype(int), minlength=2).astype(np.float64)
    return (len(labels) / (2.0 * counts))[labels.astype(int)].astype(np.float32)


def _fit_mlp(features, labels, train_rows, validation_rows, test_features, config, seed, verbose):
    import tensorflow as tf

    from lhco_diffusion.models.callbacks import EarlyStopping

    settings = config.classifier
    mean, std = features[train_rows].mean(axis=0), np.maximum(features[train_rows].std(axis=0), 1e-6)
    scaled = (features - mean) / std
    weights = balanced_weights(labels)
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.layers.Dense(units, activation="relu") for units in HIDDEN_UNITS]
                                + [tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.Adam(settings.learning_rate),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    history = model.fit(
        scaled[train_rows], labels[train_rows], sample_weight=weights[train_rows],
        validation_data=(scaled[validation_rows], labels[validation_rows], weights[validation_rows]),
        epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True,
        callbacks=[EarlyStopping(settings.early_stopping_patience, settings.min_epochs)],
        verbose=(1 if sys.stdout.isatty() else 2) if verbose else 0,
    ).history
    logits = model.predict((test_features - mean) / std, batch_size=10_000, verbose=0)[:, 0]
    record = {"epochs_trained": len(history["val_loss"]), "best_validation_loss": float(np.min(history["val_loss"])),
              "n_weights": int(model.count_params())}
    return logits, record


def _fit_hgb(features, labels, train_rows, validation_rows, test_features, config, seed, verbose):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows = np.concatenate([train_rows, validation_rows])
    model = HistGradientBoostingClassifier(
        max_iter=HGB_MAX_ITERATIONS, early_stopping=True, validation_fraction=len(validation_rows) / len(rows),
        n_iter_no_change=config.classifier.early_stopping_patience, class_weight="balanced", random_state=seed,
        verbose=int(verbose),
    )
    model.fit(features[rows], labels[rows].astype(int))
    record = {"epochs_trained": int(model.n_iter_),
              "best_validation_loss": float(-np.max(model.validation_score_))}
    return model.decision_function(test_features), record
