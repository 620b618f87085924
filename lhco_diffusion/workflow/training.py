"""Train the jet and particle models of the generator (``config.generator``: diffusion or flow
matching) on sideband background (DESIGN.md, Diffusion; Flow matching).

    summary = training.train(config, resume=False)

The sideband background of the run's processed file is split with ``data.sideband_fractions``
(train / test / validation, paper 50 / 10 / 40 %): the transforms are fitted on the training part,
the test part drives early stopping, the validation part is never touched (it is the reference
of the two-sample checks). Under Horovod every worker trains on its own shard with the gradients
averaged, the learning rate optionally scaled by the number of workers; only rank 0 writes.

``training.time_budget_minutes`` caps the training time: the run stops cleanly after the epoch
in which it ran out (checkpoints written), and a resumed run counts the time already spent. If
the budget will stop the run before ``training.epochs``, where the learning-rate schedule ends, a
``BudgetWarning`` after the second epoch says at which epoch.

Outputs under ``paths.run_dir``: ``checkpoints/last`` and ``checkpoints/best`` (see
``checkpoints``), ``training_log.csv`` and ``tensorboard/``. After each epoch with finite losses
its log row is written, then ``best`` (if the test loss fell), then ``last``; a resumed run drops
the log rows after ``last``'s epoch, so a kill at any moment leaves a log that matches the
checkpoint it resumes from. A run that has a log is never restarted silently.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from lhco_diffusion.workflow import checkpoints
from lhco_diffusion import distributed
from lhco_diffusion.config import Config, TrainingConfig, expand
from lhco_diffusion.data import dataset, mjj_weights, selection, sources, transforms
from lhco_diffusion.errors import InputError, TrainingDiverged
from lhco_diffusion.files import atomic_output, recover
from lhco_diffusion.models.build import build_generator
from lhco_diffusion.models.generator import precision_policy

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


def training_data(config: Config, path: str | Path, stats: transforms.Stats | None = None) -> TrainingData:
    """The train and test splits of the sideband background in model space.

    ``stats`` (from a checkpoint being resumed) are used as they are; otherwise they are fitted
    on the training split.
    """
    train, test = (selection.sideband_background(path, config, split) for split in ("train", "test"))
    stats = stats or transforms.fit(train, config.transforms, config.data.sideband,
                                    config.data.min_leading_jet_pt)
    return TrainingData(transforms.to_model(stats, train), transforms.to_model(stats, test), stats)


def learning_rate(settings: TrainingConfig, workers: int, steps_per_epoch: int) -> tf.keras.optimizers.schedules.CosineDecay:
    """Cosine decay to zero from ``learning_rate`` (x ``workers`` if scaled) over all epochs, after
    a linear warm-up from zero over the first ``warmup_epochs`` (if any)."""
    peak = settings.learning_rate * (workers if settings.scale_learning_rate else 1)
    warmup = min(settings.warmup_epochs, settings.epochs) * steps_per_epoch
    decay = max(settings.epochs * steps_per_epoch - warmup, 1)
    if not warmup:
        return tf.keras.optimizers.schedules.CosineDecay(peak, decay_steps=decay)
    return tf.keras.optimizers.schedules.CosineDecay(0.0, decay_steps=decay, warmup_target=peak, warmup_steps=warmup)


def optimizer(settings: TrainingConfig, workers: int, steps_per_epoch: int) -> tf.keras.optimizers.Optimizer:
    """Adam, or AdamW with ``weight_decay`` (``training.optimizer``), on the ``learning_rate`` schedule;
    with loss scaling under float16 mixed precision."""
    schedule = learning_rate(settings, workers, steps_per_epoch)
    if settings.optimizer == "adamw":
        chosen = tf.keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay)
    else:
        chosen = tf.keras.optimizers.Adam(schedule)
    if settings.mixed_precision == "float16":  # float16 gradients underflow without loss scaling
        return tf.keras.mixed_precision.LossScaleOptimizer(chosen)
    return chosen


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


class TrainingLog(tf.keras.callbacks.Callback):
    """``training_log.csv``: ``epoch`` and every logged loss, one row per epoch with finite losses.

    A run starting at ``first_epoch`` > 0 (a resume) first drops the rows of epochs from
    ``first_epoch`` on (written before a kill, after its checkpoint) and any torn last line.
    """

    def __init__(self, path: Path, first_epoch: int):
        super().__init__()
        self.path, self.first_epoch = path, first_epoch

    def on_train_begin(self, logs=None):
        if not self.path.exists():
            return
        header, rows = read_log(self.path)
        kept = [row for row in rows if int(row[0]) < self.first_epoch]
        with atomic_output(self.path) as temporary:
            temporary.write_text(_csv_lines([header, *kept]) if kept else "")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite_losses(logs):
            return
        header = read_log(self.path)[0] or ["epoch", *sorted(logs)]
        lines = [] if self.path.exists() and self.path.stat().st_size else [header]
        lines.append([str(epoch), *(str(float(logs.get(name, np.nan))) for name in header[1:])])
        with self.path.open("a") as log:
            log.write(_csv_lines(lines))
            log.flush()


def read_log(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """(header, rows) of a training log; rows with a torn or non-numeric epoch are left out."""
    if not path.is_file():
        return None, []
    lines = list(csv.reader(path.read_text().splitlines()))
    if not lines:
        return None, []
    header, rows = lines[0], lines[1:]
    return header, [row for row in rows if len(row) == len(header) and row[0].isdigit()]


def _csv_lines(rows: list[list[str]]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def _finite_losses(logs: dict) -> bool:
    return all(math.isfinite(float(logs.get(name, np.nan))) for name in ("loss", "val_loss"))


class TimeBudget(tf.keras.callbacks.Callback):
    """Stop after the epoch during which the training time (earlier runs' ``spent`` seconds plus
    this run's) reaches ``minutes``; 0 means no limit. ``seconds`` (averaged over the workers, so
    they all stop together) is updated at each epoch end, before the checkpoint writer records
    it for a resumed run to count.

    From this run's second epoch on (the first one also traces the graphs), the last epoch's
    length projects where the budget will stop the run: if that is before ``epochs``, where the
    learning-rate schedule ends, one ``BudgetWarning`` says so (with ``report``: rank 0 only).
    """

    def __init__(self, minutes: float, spent: float = 0.0, epochs: int = 0, report: bool = True):
        super().__init__()
        self.limit, self.seconds, self.start = 60.0 * minutes, spent, time.monotonic()
        self.spent, self.epochs, self.report = spent, epochs, report
        self.epochs_this_run, self.warned = 0, False

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        previous = self.seconds
        self.seconds = distributed.allreduce_mean(self.spent + time.monotonic() - self.start, "training_seconds")
        self.epochs_this_run += 1
        if self.limit and self.seconds >= self.limit:
            self.model.stop_training = True
        elif self.limit and self.epochs_this_run >= 2 and not self.warned:
            self._warn_if_short(epoch + 1, self.seconds - previous)

    def _warn_if_short(self, done: int, epoch_seconds: float) -> None:
        """Warn once if, at ``epoch_seconds`` an epoch, the budget ends the run before ``epochs``."""
        last = done + math.ceil((self.limit - self.seconds) / epoch_seconds)
        if last < self.epochs:
            self.warned = True
            if self.report:
                warnings.warn(
                    f"at {epoch_seconds:.0f} s an epoch, training.time_budget_minutes={self.limit / 60:g} will stop "
                    f"this run near epoch {last} of {self.epochs}, before the learning-rate schedule has decayed; "
                    f"set training.epochs={last} to fit the schedule to the budget, or give a larger budget",
                    BudgetWarning, stacklevel=2)


class BudgetWarning(UserWarning):
    """The time budget will stop training before its configured epochs."""


class CheckpointWriter(tf.keras.callbacks.Callback):
    """After each epoch with finite losses: rewrite ``last``, and ``best`` if the test loss fell."""

    def __init__(self, paths: dict[str, Path], optimizer, stats: transforms.Stats, config: Config,
                 early_stopping: ResumableEarlyStopping, budget: TimeBudget):
        super().__init__()
        self.paths, self.optimizer, self.stats, self.config = paths, optimizer, stats, config
        self.early_stopping, self.budget = early_stopping, budget

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite_losses(logs):
            return
        improved = self.early_stopping.wait == 0
        state = {"epoch": epoch + 1, "best_loss": float(self.early_stopping.best),
                 "wait": int(self.early_stopping.wait), "loss": float(logs["loss"]),
                 "val_loss": float(logs["val_loss"]), "workers": distributed.current().size,
                 "training_seconds": self.budget.seconds}
        if improved:
            checkpoints.save(self.paths["best"], self.model, self.optimizer, self.stats, self.config, state)
        checkpoints.save(self.paths["last"], self.model, self.optimizer, self.stats, self.config, state)


def train(config: Config, resume: bool = False, callbacks: list[tf.keras.callbacks.Callback] = (),
          rescale_workers: bool = False) -> dict:
    """Train (or, with ``resume``, continue) the generator of ``config``; see the module docstring.

    ``callbacks`` run after the package's own (checkpoints are written before they see an epoch).
    A resumed run continues the cosine decay from its epoch count; with another number of
    workers than the checkpoint's it is refused unless ``rescale_workers``.

    Returns ``{"epochs", "best_loss", "best", "last", "stopped_early"}`` (paths as str). Raises
    ``InputError`` for unusable data, workers that disagree on the configuration or run
    directory, an existing run without ``resume``, resumed by another number of workers or under
    a configuration whose model differs from its checkpoint's (``checkpoints.model_difference``), and
    ``TrainingDiverged`` when the loss stops being finite (the last good checkpoint is kept).
    """
    context = distributed.init()
    distributed.require_agreement({"configuration": config.to_yaml(),
                                   "run directory": str(expand(config.paths.run_dir).resolve())})
    paths = run_paths(config)
    settings = config.training
    if context.is_root:
        for name in ("best", "last"):
            recover(paths[name])  # finish or undo a checkpoint swap a kill interrupted
    distributed.barrier()
    _check_run_directory(paths, resume)
    state = checkpoints.read_state(paths["last"]) if resume and paths["last"].exists() else {"epoch": 0}
    if state["epoch"]:  # refused before the data are prepared, which can take hours
        difference = checkpoints.model_difference(checkpoints.stored_config(paths["last"]), config)
        if difference:
            raise InputError(f"{difference}; to train this configuration set paths.run_dir to a new directory "
                             f"(or remove {paths['last'].parent.parent})")
    path = _processed_file_once(config, context)
    stats = transforms.Stats.load(paths["last"] / "transforms.json") if state["epoch"] else None
    if _finished(state, settings):
        if context.is_root:
            print(f"{paths['last']} has already finished training (epoch {state['epoch']} of {settings.epochs})")
        return _summary(paths, state, stopped_early=state["epoch"] < settings.epochs, epochs_this_run=0)
    if state["epoch"]:
        note = checkpoints.check_workers(paths["last"], state, context.size, rescale_workers)
        if note and context.is_root:
            print(note, file=sys.stderr)
    data = training_data(config, path, stats)
    if min(len(data.train), len(data.test)) < context.size:
        raise InputError(f"{len(data.train)} training and {len(data.test)} test events cannot be shared "
                         f"among {context.size} workers")

    steps = settings.steps_per_epoch or dataset.steps_per_epoch(len(data.train), settings.batch_size, context.size)
    tf.keras.utils.set_random_seed(settings.seed)
    with precision_policy(settings.mixed_precision):
        model = build_generator(config, wrap_tape=distributed.wrap_tape,
                                noise_seed=settings.seed * 100_003 + context.rank)
    model_optimizer = optimizer(settings, context.size, steps)
    if state["epoch"]:
        checkpoints.restore(paths["last"], model, model_optimizer)
        model_optimizer.iterations.assign(state["epoch"] * steps)  # the schedule's place, kept if steps changed
    bucket_window = config.data.bucket_window if config.data.bucketing else None
    if bucket_window:
        model.real_particles_per_event = float(np.mean(data.train.mask.sum(axis=(1, 2))))
    if settings.mjj_weight_power:
        signal_region = transforms.condition(data.stats, np.asarray(config.data.signal_region))[:, 0]
        model.mjj_weight_table = mjj_weights.condition_weight_table(data.train.condition[:, 0], tuple(signal_region),
                                                                    settings.mjj_weight_power)
    # Horovod's allreduce has no XLA kernel in a default build: the distributed step runs as a graph.
    model.compile(optimizer=model_optimizer, jit_compile=settings.jit_compile and context.size == 1)

    def batches(inputs, shuffle):
        return dataset.diffusion_dataset(inputs, settings.batch_size, context.rank, context.size, shuffle=shuffle,
                                         seed=settings.seed, pad_to_longest=config.data.pad_to_longest,
                                         first_batch=state["epoch"] * steps, bucket_window=bucket_window)

    non_finite = StopOnNonFiniteLoss()
    early_stopping = ResumableEarlyStopping(settings.early_stopping_patience, state.get("best_loss", np.inf),
                                            state.get("wait", 0))
    budget = TimeBudget(settings.time_budget_minutes, state.get("training_seconds", 0.0), settings.epochs,
                        report=context.is_root)
    own = [distributed.broadcast_callback(model.variables), distributed.average_metrics_callback(),
           non_finite, early_stopping, budget]
    if context.is_root:
        own += _writers(paths, model_optimizer, data.stats, config, early_stopping, budget, first_epoch=state["epoch"])
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
             first_epoch: int) -> list[tf.keras.callbacks.Callback]:
    """Rank 0's callbacks: checkpoints, the CSV log (continued when resuming) and TensorBoard."""
    if first_epoch:
        print(f"resuming {paths['last']} after epoch {first_epoch} of {config.training.epochs}")
    return [TrainingLog(paths["log"], first_epoch),
            CheckpointWriter(paths, optimizer, stats, config, early_stopping, budget),
            tf.keras.callbacks.TensorBoard(str(paths["tensorboard"]), write_graph=False, profile_batch=0)]


def _check_run_directory(paths: dict[str, Path], resume: bool) -> None:
    """``InputError`` for a run that would be overwritten (no ``--resume``) or could only
    restart from scratch although it has a log."""
    logged = len(read_log(paths["log"])[1])
    if not resume and (paths["last"].exists() or logged):
        raise InputError(f"{paths['last'].parent.parent} already holds a run; pass --resume to continue it, or "
                         "set paths.run_dir to a new directory")
    if resume and logged and not paths["last"].exists():
        raise InputError(f"{paths['log']} records {logged} epoch(s) but {paths['last']} is missing, so the run "
                         "cannot be resumed; set paths.run_dir to a new directory to train again")


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
