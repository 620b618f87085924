"""Train the jet and particle diffusion models on sideband background (DESIGN.md, Diffusion).

    summary = training.train(config, resume=False)

The sideband background of the run's processed file is split with ``data.sideband_fractions``
(train / test / validation, paper 50 / 10 / 40 %): the transforms are fitted on the training part,
the test part drives early stopping, the validation part is never touched (it is the reference
of the two-sample checks). Under Horovod every worker trains on its own shard with the gradients
averaged, the learning rate optionally scaled by the number of workers; only rank 0 writes.

``training.time_budget_minutes`` caps the training time: the run stops cleanly after the epoch
in which it ran out (checkpoints written), and a resumed run counts the time already spent.

Outputs under ``paths.run_dir``: ``checkpoints/last`` and ``checkpoints/best`` (see
``checkpoints``), ``training_log.csv`` and ``tensorboard/``.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from lhco_diffusion import checkpoints, distributed
from lhco_diffusion.config import Config, TrainingConfig, expand
from lhco_diffusion.data import dataset, processed, regions, sources, transforms
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError, TrainingDiverged
from lhco_diffusion.models.diffusion import DiffusionModel

READ_CHUNK = 50_000  # events read from the processed file at a time


@dataclasses.dataclass
class TrainingData:
    """Model-space training and test inputs, and the statistics that made them."""

    train: transforms.ModelInputs
    test: transforms.ModelInputs
    stats: transforms.Stats


def run_paths(config: Config) -> dict[str, Path]:
    """Where a run writes: checkpoints (last, best), the CSV log and TensorBoard events."""
    run_dir = expand(config.paths.run_dir)
    return {"last": run_dir / "checkpoints" / "last", "best": run_dir / "checkpoints" / "best",
            "log": run_dir / "training_log.csv", "tensorboard": run_dir / "tensorboard"}


def sideband_background(path: str | Path, config: Config) -> Events:
    """All background events of the processed file in the sideband, read chunk by chunk."""
    blocks = []
    for start in range(0, processed.count(path), READ_CHUNK):
        events = processed.load(path, start, start + READ_CHUNK, config.data.npart)
        blocks.append(events.select(regions.sideband_mask(events.mjj, config.data) & (events.label == 0)))
    background = Events.concatenate(blocks) if blocks else processed.load(path, 0, 0)
    if len(background) == 0:
        raise InputError(f"{path} holds no background event in the sideband {list(config.data.sideband)} GeV")
    return background


def training_data(config: Config, path: str | Path, stats: transforms.Stats | None = None) -> TrainingData:
    """The train and test splits of the sideband background in model space.

    ``stats`` (from a checkpoint being resumed) are used as they are; otherwise they are fitted
    on the training split.
    """
    background = sideband_background(path, config)
    splits = regions.sideband_splits(len(background), config.data.sideband_fractions, config.data.seed)
    train, test = background.select(splits["train"]), background.select(splits["test"])
    stats = stats or transforms.fit(train, config.transforms, config.data.sideband)
    return TrainingData(transforms.to_model(stats, train), transforms.to_model(stats, test), stats)


def learning_rate(settings: TrainingConfig, workers: int, steps_per_epoch: int) -> tf.keras.optimizers.schedules.CosineDecay:
    """Cosine decay to zero over all epochs from ``learning_rate`` (x ``workers`` if scaled)."""
    initial = settings.learning_rate * (workers if settings.scale_learning_rate else 1)
    return tf.keras.optimizers.schedules.CosineDecay(initial, decay_steps=settings.epochs * steps_per_epoch)


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite and remember where it happened."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.failure: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.failure = f"the training loss became {loss} in epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True


class ResumableEarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Early stopping on the test loss that can start from a resumed run's best loss and wait."""

    def __init__(self, patience: int, best: float = np.inf, wait: int = 0):
        super().__init__(monitor="val_loss", patience=patience)
        self.resumed_best, self.resumed_wait = best, wait

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.best, self.wait = self.resumed_best, self.resumed_wait


class TimeBudget(tf.keras.callbacks.Callback):
    """Stop after the epoch during which the training time (earlier runs' ``spent`` seconds plus
    this run's) reaches ``minutes``; 0 means no limit. ``seconds`` (averaged over the workers, so
    they all stop together) is updated at each epoch end, before the checkpoint writer records
    it for a resumed run to count."""

    def __init__(self, minutes: float, spent: float = 0.0):
        super().__init__()
        self.limit, self.seconds, self.start = 60.0 * minutes, spent, time.monotonic()
        self.spent = spent

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = distributed.allreduce_mean(self.spent + time.monotonic() - self.start, "training_seconds")
        if self.limit and self.seconds >= self.limit:
            self.model.stop_training = True


class CheckpointWriter(tf.keras.callbacks.Callback):
    """After each epoch with finite losses: rewrite ``last``, and ``best`` if the test loss fell."""

    def __init__(self, paths: dict[str, Path], optimizer, stats: transforms.Stats, config: Config,
                 early_stopping: ResumableEarlyStopping, budget: TimeBudget):
        super().__init__()
        self.paths, self.optimizer, self.stats, self.config = paths, optimizer, stats, config
        self.early_stopping, self.budget = early_stopping, budget

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(logs.get(name, np.nan))) for name in ("loss", "val_loss")):
            return
        improved = self.early_stopping.wait == 0
        state = {"epoch": epoch + 1, "best_loss": float(self.early_stopping.best),
                 "wait": int(self.early_stopping.wait), "loss": float(logs["loss"]),
                 "val_loss": float(logs["val_loss"]), "training_seconds": self.budget.seconds}
        if improved:
            checkpoints.save(self.paths["best"], self.model, self.optimizer, self.stats, self.config, state)
        checkpoints.save(self.paths["last"], self.model, self.optimizer, self.stats, self.config, state)


def train(config: Config, resume: bool = False, callbacks: list[tf.keras.callbacks.Callback] = ()) -> dict:
    """Train (or, with ``resume``, continue) the diffusion models of ``config``; see the module docstring.

    ``callbacks`` run after the package's own (checkpoints are written before they see an epoch).

    Returns ``{"epochs", "best_loss", "best", "last", "stopped_early"}`` (paths as str). Raises
    ``InputError`` for unusable data or an existing run without ``resume``, and
    ``TrainingDiverged`` when the loss stops being finite (the last good checkpoint is kept).
    """
    context = distributed.init()
    paths = run_paths(config)
    settings = config.training
    if paths["last"].exists() and not resume:
        raise InputError(f"{paths['last'].parent} already holds a run; pass --resume to continue it, or set "
                         "paths.run_dir to a new directory")
    path = _processed_file_once(config, context)
    state = checkpoints.read_state(paths["last"]) if resume and paths["last"].exists() else {"epoch": 0}
    stats = transforms.Stats.load(paths["last"] / "transforms.json") if state["epoch"] else None
    if _finished(state, settings):
        if context.is_root:
            print(f"{paths['last']} has already finished training (epoch {state['epoch']} of {settings.epochs})")
        return _summary(paths, state, stopped_early=state["epoch"] < settings.epochs, epochs_this_run=0)
    data = training_data(config, path, stats)
    if min(len(data.train), len(data.test)) < context.size:
        raise InputError(f"{len(data.train)} training and {len(data.test)} test events cannot be shared "
                         f"among {context.size} workers")

    steps = settings.steps_per_epoch or dataset.steps_per_epoch(len(data.train), settings.batch_size, context.size)
    tf.keras.utils.set_random_seed(settings.seed)
    model = DiffusionModel(config.jet_model, config.particle_model, settings, wrap_tape=distributed.wrap_tape,
                           noise_seed=settings.seed * 100_003 + context.rank)
    optimizer = tf.keras.optimizers.Adam(learning_rate(settings, context.size, steps))
    if state["epoch"]:
        checkpoints.restore(paths["last"], model, optimizer)
    model.compile(optimizer=optimizer)

    def batches(inputs, shuffle):
        return dataset.diffusion_dataset(inputs, settings.batch_size, context.rank, context.size, shuffle=shuffle,
                                         seed=settings.seed, pad_to_longest=config.data.pad_to_longest,
                                         first_batch=state["epoch"] * steps)

    non_finite = StopOnNonFiniteLoss()
    early_stopping = ResumableEarlyStopping(settings.early_stopping_patience, state.get("best_loss", np.inf),
                                            state.get("wait", 0))
    budget = TimeBudget(settings.time_budget_minutes, state.get("training_seconds", 0.0))
    own = [distributed.broadcast_callback(model.variables), distributed.average_metrics_callback(),
           non_finite, early_stopping, budget]
    if context.is_root:
        own += _writers(paths, optimizer, data.stats, config, early_stopping, budget, resumed=bool(state["epoch"]))
    paths["last"].parent.mkdir(parents=True, exist_ok=True)
    verbose = (1 if sys.stdout.isatty() else 2) if context.is_root else 0
    history = model.fit(batches(data.train, True), validation_data=batches(data.test, False),
                        epochs=settings.epochs, initial_epoch=state["epoch"], steps_per_epoch=steps,
                        callbacks=[*own, *callbacks], verbose=verbose)
    if non_finite.failure:
        raise TrainingDiverged(_diverged(non_finite.failure, paths["last"]))
    final = checkpoints.read_state(paths["last"]) if paths["last"].exists() else state
    return _summary(paths, final, bool(early_stopping.stopped_epoch), len(history.history.get("loss", [])))


def _writers(paths: dict[str, Path], optimizer, stats: transforms.Stats, config: Config,
             early_stopping: ResumableEarlyStopping, budget: TimeBudget,
             resumed: bool) -> list[tf.keras.callbacks.Callback]:
    """Rank 0's callbacks: checkpoints, the CSV log (continued when resuming) and TensorBoard."""
    if resumed:
        print(f"resuming {paths['last']} after epoch {checkpoints.read_state(paths['last'])['epoch']} "
              f"of {config.training.epochs}")
    return [CheckpointWriter(paths, optimizer, stats, config, early_stopping, budget),
            tf.keras.callbacks.CSVLogger(str(paths["log"]), append=resumed),
            tf.keras.callbacks.TensorBoard(str(paths["tensorboard"]), write_graph=False, profile_batch=0)]


def _diverged(failure: str, last: Path) -> str:
    kept = checkpoints.read_state(last)["epoch"] if last.exists() else None
    where = f"the checkpoint of epoch {kept} in {last} is intact" if kept else "no checkpoint was written"
    return f"{failure}; {where}. Lower training.learning_rate or training.clip_norm, then restart with --resume"


def _finished(state: dict, settings: TrainingConfig) -> bool:
    """True if a checkpoint's run used up its epochs, its early-stopping patience or its time budget."""
    out_of_time = 0 < 60.0 * settings.time_budget_minutes <= state.get("training_seconds", 0.0)
    return (state["epoch"] >= settings.epochs or state.get("wait", 0) >= settings.early_stopping_patience
            or out_of_time)


def _summary(paths: dict[str, Path], state: dict, stopped_early: bool, epochs_this_run: int) -> dict:
    return {"epochs": state["epoch"], "best_loss": state.get("best_loss"), "best": str(paths["best"]),
            "last": str(paths["last"]), "stopped_early": stopped_early, "epochs_this_run": epochs_this_run}


def _processed_file_once(config: Config, context: distributed.Context) -> Path:
    """The run's processed file, prepared by rank 0 while the other workers wait."""
    if context.is_root:
        path = sources.processed_file(config)
    distributed.barrier()
    return path if context.is_root else sources.processed_file(config, progress=False)
