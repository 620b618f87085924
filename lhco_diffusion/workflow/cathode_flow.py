"""The CATHODE background model: a conditional normalizing flow of the four high-level features
given mjj, trained on sideband background (Hallin et al., arXiv:2109.00546).

    trained = flow.trained_flow(config, data_path)     # trained once, then reused from the run
    features = trained.sample(mjj, seed)              # (n, 4) [mj1 GeV, delta_mj GeV, tau21 j1, tau21 j2]

Data: the sideband background of the processed file, split exactly like the diffusion models'
(``data.selection.sideband_rows``): the flow learns
on "train", early stopping watches the loss on "test", "validation" stays unseen (two-sample checks).

Model space (CATHODE's preprocessing, fitted on the training split): each feature is scaled
linearly from its training range, widened by ``RANGE_MARGIN`` on both sides, to (0, 1), passed
through the logit and standardised; the inverse maps any real number back inside the widened
range. The condition is mjj [GeV] mapped linearly from the sideband edges to [-1, 1].

Network: ``flow.num_layers`` masked autoregressive flow blocks (``tfp.bijectors.
MaskedAutoregressiveFlow``, affine), each a MADE (``AutoregressiveNetwork``, ``flow.hidden_units``,
ReLU) that also sees the condition, with the feature order reversed between blocks, on a
standard normal. CATHODE keeps its deep stack stable with batch normalisation between the blocks;
here each block's output is instead scaled by a learnable gate that starts at 0 (every block
starts as the identity) and log-scales are soft-clamped to +-``MAX_LOG_SCALE``. Training:
Adam at ``flow.learning_rate``, batches of ``flow.batch_size``, up to ``flow.epochs`` epochs,
stopping after ``flow.early_stopping_patience`` epochs without a lower test loss, best weights kept.

A trained flow is saved under ``<run_dir>/flow/<key>/`` (weights, preprocessing.json, record.json);
``key`` is a digest of everything that determines it (the flow settings apart from the classifier
and the oversampling, the regions, splits and seed, and the processed file's path, size and time),
so any later call with the same settings and data reuses it and a changed setting trains anew.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from lhco_diffusion.config import Config, FlowConfig, expand
from lhco_diffusion.data import processed, substructure
from lhco_diffusion.errors import InputError, TrainingDiverged
from lhco_diffusion.files import atomic_output, read_json, write_json
from lhco_diffusion.data import selection
from lhco_diffusion.models.callbacks import EarlyStopping
from lhco_diffusion.models.maf import ConditionalFlow

RANGE_MARGIN = 0.05  # the min-max range of each feature is widened by this share on both sides
SAMPLE_BATCH = 50_000  # events per sampling call
N_FEATURES = len(substructure.FEATURES)


# ---------------------------------------------------------------------------- model space


@dataclasses.dataclass
class Preprocessing:
    """Features <-> standardised logit space, and mjj -> condition (see the module docstring).

    minimum, maximum (4,): the widened training range; mean, std (4,): of the logits;
    sideband (2,): mjj [GeV] mapped to -1 and +1.
    """

    minimum: np.ndarray
    maximum: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    sideband: np.ndarray

    def __post_init__(self):
        for field in dataclasses.fields(self):
            setattr(self, field.name, np.asarray(getattr(self, field.name), np.float64))

    @classmethod
    def fit(cls, features: np.ndarray, sideband: tuple[float, float]) -> "Preprocessing":
        """Fitted to training features (N, 4); ``sideband`` [GeV] sets the condition scale."""
        features = np.asarray(features, np.float64)
        if len(features) == 0:
            raise InputError("cannot fit the flow's preprocessing to zero events")
        low, high = features.min(axis=0), features.max(axis=0)
        width = np.maximum(high - low, 1e-6)
        unscaled = cls(low - RANGE_MARGIN * width, high + RANGE_MARGIN * width, np.zeros(N_FEATURES),
                       np.ones(N_FEATURES), np.asarray(sideband))
        logits = unscaled.to_latent(features)
        return dataclasses.replace(unscaled, mean=logits.mean(axis=0), std=np.maximum(logits.std(axis=0), 1e-6))

    def to_latent(self, features: np.ndarray) -> np.ndarray:
        """(N, 4) float32 standardised logits of features (N, 4) (clipped into the widened range)."""
        unit = (np.asarray(features, np.float64) - self.minimum) / (self.maximum - self.minimum)
        unit = np.clip(unit, 1e-6, 1.0 - 1e-6)
        return ((np.log(unit) - np.log1p(-unit) - self.mean) / self.std).astype(np.float32)

    def to_physical(self, latent: np.ndarray) -> np.ndarray:
        """(N, 4) float32 features of model-space values (N, 4): the inverse of ``to_latent``."""
        logits = np.asarray(latent, np.float64) * self.std + self.mean
        unit = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow
        return (self.minimum + unit * (self.maximum - self.minimum)).astype(np.float32)

    def condition(self, mjj: np.ndarray) -> np.ndarray:
        """(N, 1) float32: mjj [GeV] mapped linearly from the sideband edges to [-1, 1]."""
        low, high = self.sideband
        return (2.0 * (np.asarray(mjj, np.float64) - low) / (high - low) - 1.0).reshape(-1, 1).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, {field.name: getattr(self, field.name).tolist() for field in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Preprocessing":
        return cls(**read_json(path, "CATHODE preprocessing"))


@dataclasses.dataclass
class TrainedFlow:
    """A trained flow with its preprocessing; ``directory`` is where it is saved (or None)."""

    model: ConditionalFlow
    preprocessing: Preprocessing
    record: dict
    directory: Path | None = None

    def sample(self, mjj: np.ndarray, seed: int) -> np.ndarray:
        """(n, 4) float32 features [mj1 GeV, delta_mj GeV, tau21 j1, tau21 j2] for mjj (n,) [GeV]."""
        condition = self.preprocessing.condition(mjj)
        noise = np.random.default_rng(seed).standard_normal((len(condition), N_FEATURES)).astype(np.float32)
        # eager: as fast as tf.function here, and grappler cannot digest the MAF's while loop
        latent = [self.model.sample(condition[start:start + SAMPLE_BATCH], noise[start:start + SAMPLE_BATCH]).numpy()
                  for start in range(0, len(condition), SAMPLE_BATCH)]
        latent = np.concatenate(latent) if latent else np.zeros((0, N_FEATURES), np.float32)
        return self.preprocessing.to_physical(latent)

    def log_prob(self, features: np.ndarray, mjj: np.ndarray) -> np.ndarray:
        """(n,) log density of model-space features (no Jacobian of the preprocessing)."""
        return self.model.log_prob(self.preprocessing.to_latent(features),
                                   self.preprocessing.condition(mjj)).numpy()


# ---------------------------------------------------------------------------- data and training


def sideband_features(config: Config, data_path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "test", "validation"}`` -> (features (n, 4), mjj (n,) [GeV]) of the sideband
    background, split like the diffusion models' training data; reads no particles."""
    split_rows = selection.sideband_rows(data_path, config.data)
    columns = processed.load_columns(data_path, ("jets", "mjj", processed.SUBSTRUCTURE))
    mass = columns["jets"][..., 3]
    return {name: (substructure.high_level_features(mass[rows], columns[processed.SUBSTRUCTURE][rows]),
                   columns["mjj"][rows]) for name, rows in split_rows.items()}


def train(config: Config, data_path: str | os.PathLike, verbose: bool = True) -> TrainedFlow:
    """Fit the preprocessing and train the flow on the sideband (see the module docstring)."""
    splits = sideband_features(config, data_path)
    (train_features, train_mjj), (test_features, test_mjj) = splits["train"], splits["test"]
    if len(test_mjj) == 0:
        raise InputError("the sideband test split is empty; the flow needs it for early stopping")
    preprocessing = Preprocessing.fit(train_features, config.data.sideband)
    tf.keras.utils.set_random_seed(config.flow.seed)
    model = build(config)
    history = fit(model, preprocessing, splits["train"], splits["test"], config.flow, verbose=verbose)
    if not np.all(np.isfinite(history["loss"])):
        raise TrainingDiverged(f"the flow's training loss became {history['loss'][-1]} in epoch "
                               f"{len(history['loss'])}; lower flow.learning_rate")
    record = {"epochs_trained": len(history["loss"]), "best_test_loss": float(np.min(history["val_loss"])),
              "n_train": len(train_mjj), "n_test": len(test_mjj), "n_weights": int(model.count_params())}
    return TrainedFlow(model, preprocessing, record)


def fit(model: ConditionalFlow, preprocessing: Preprocessing, train_split: tuple[np.ndarray, np.ndarray],
        test_split: tuple[np.ndarray, np.ndarray], settings: FlowConfig,
        callbacks: list[tf.keras.callbacks.Callback] = (), verbose: bool = True) -> dict[str, list[float]]:
    """Train ``model`` on (features (n, 4), mjj (n,) [GeV]) with early stopping on the test split
    (best weights kept); returns the Keras history (``loss``, ``val_loss`` per epoch)."""

    def batches(features, mjj, shuffle):
        dataset = tf.data.Dataset.from_tensor_slices((preprocessing.to_latent(features),
                                                      preprocessing.condition(mjj)))
        if shuffle:
            dataset = dataset.shuffle(len(mjj), seed=settings.seed, reshuffle_each_iteration=True)
        return dataset.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)

    model.compile(optimizer=tf.keras.optimizers.Adam(settings.learning_rate))
    progress = (1 if sys.stdout.isatty() else 2) if verbose else 0
    return model.fit(batches(*train_split, shuffle=True), epochs=settings.epochs, verbose=progress,
                     validation_data=batches(*test_split, shuffle=False),
                     callbacks=[*callbacks, tf.keras.callbacks.TerminateOnNaN(),
                                EarlyStopping(settings.early_stopping_patience)]).history


def build(config: Config) -> ConditionalFlow:
    """An untrained flow of ``config.flow`` with its weights created."""
    model = ConditionalFlow(config.flow.num_layers, config.flow.hidden_units, N_FEATURES)
    model((tf.zeros((1, N_FEATURES)), tf.zeros((1, 1))))
    return model


def directory(config: Config, data_path: str | os.PathLike) -> Path:
    """``<run_dir>/flow/<key>``: where the flow of these settings and this data file is saved."""
    path = Path(data_path).resolve()
    stat = path.stat()
    flow = {key: value for key, value in dataclasses.asdict(config.flow).items()
            if key not in ("classifier", "oversampling")}
    data = config.data
    identity = {"flow": flow, "signal_region": data.signal_region, "sideband": data.sideband,
                "sideband_fractions": data.sideband_fractions, "seed": data.seed,
                "data": [str(path), stat.st_size, stat.st_mtime_ns]}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode()).hexdigest()[:12]
    return expand(config.paths.run_dir) / "flow" / key


def save(trained: TrainedFlow, target: str | os.PathLike, config: Config) -> None:
    """Write weights, preprocessing and the training record (with the configuration) atomically."""
    with atomic_output(target) as temporary:
        temporary.mkdir(parents=True)
        trained.model.save_weights(str(temporary / "weights"))
        trained.preprocessing.save(temporary / "preprocessing.json")
        record = {**trained.record, "config": config.to_dict()}
        write_json(temporary / "record.json", record)


def load(source: str | os.PathLike, config: Config) -> TrainedFlow:
    """A flow written by ``save`` (built with ``config.flow``'s architecture)."""
    source = Path(source)
    if not (source / "record.json").is_file():
        raise InputError(f"{source} holds no saved flow")
    model = build(config)
    model.load_weights(str(source / "weights")).expect_partial()
    record = read_json(source / "record.json", "flow training record")
    record.pop("config", None)
    return TrainedFlow(model, Preprocessing.load(source / "preprocessing.json"), record, source)


def trained_flow(config: Config, data_path: str | os.PathLike, verbose: bool = True) -> TrainedFlow:
    """The flow of these settings and data: loaded from ``directory(...)``, else trained and saved."""
    target = directory(config, data_path)
    if (target / "record.json").is_file():
        return load(target, config)
    trained = train(config, data_path, verbose)
    save(trained, target, config)
    return dataclasses.replace(trained, directory=target)
