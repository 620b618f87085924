"""Training checkpoints: everything needed to sample from, or resume, a diffusion-model run.

A checkpoint is a directory (written atomically, by rank 0 only):

    weights.index, weights.data-*   the DiffusionModel (networks and EMA networks) and the optimizer
    transforms.json                 the model-space statistics (``data.transforms.Stats``)
    config.yaml                     the full configuration the run used
    state.json                      epochs completed, best test loss, epochs since it improved

``<run_dir>/checkpoints/last`` is rewritten after every good epoch, ``best`` whenever the test
loss improves; each rewrite swaps whole directories (``files.atomic_output``) and every reader
first recovers a swap that was killed midway. ``load`` rebuilds the model from the stored
configuration alone. A damaged checkpoint (a truncated or foreign file) is an ``InputError``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import tensorflow as tf
import yaml

from lhco_diffusion import config as config_module
from lhco_diffusion.config import Config
from lhco_diffusion.data.transforms import Stats
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output, recover
from lhco_diffusion.models.diffusion import DiffusionModel

WEIGHTS = "weights"
FILES = ("weights.index", "transforms.json", "config.yaml", "state.json")


@dataclasses.dataclass
class Checkpoint:
    """A restored checkpoint: the model (with EMA weights), its transforms, config and progress."""

    model: DiffusionModel
    stats: Stats
    config: Config
    state: dict  # {"epoch": epochs completed, "best_loss": ..., "wait": ...}


def save(directory: str | os.PathLike, model: DiffusionModel, optimizer: tf.keras.optimizers.Optimizer,
         stats: Stats, config: Config, state: dict) -> None:
    """Write a checkpoint directory atomically (a crash leaves the previous one intact)."""
    with atomic_output(directory) as temporary:
        temporary.mkdir()
        tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(temporary / WEIGHTS))
        stats.save(temporary / "transforms.json")
        (temporary / "config.yaml").write_text(config.to_yaml())
        (temporary / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def load(directory: str | os.PathLike) -> Checkpoint:
    """Rebuild the model of a checkpoint from its stored configuration and restore its weights."""
    directory = _checked(directory)
    config = config_module.from_dict(_read(directory / "config.yaml", yaml.safe_load),
                                     source=str(directory / "config.yaml"))
    model = DiffusionModel(config.jet_model, config.particle_model, config.training)
    restore(directory, model)
    return Checkpoint(model, Stats.load(directory / "transforms.json"), config, read_state(directory))


def restore(directory: str | os.PathLike, model: DiffusionModel,
            optimizer: tf.keras.optimizers.Optimizer | None = None) -> None:
    """Load a checkpoint's weights into ``model`` (and its state into ``optimizer``, to resume).

    With an optimizer every stored value must find its variable, so a resumed run cannot
    silently continue with a model of another shape.
    """
    directory = _checked(directory)
    objects = {"model": model}
    if optimizer is not None:
        optimizer.build(model.jet_network.trainable_variables + model.particle_network.trainable_variables)
        objects["optimizer"] = optimizer
    try:
        status = tf.train.Checkpoint(**objects).read(str(directory / WEIGHTS))
    except (IndexError, tf.errors.OpError):  # what TensorFlow raises for a truncated or foreign file
        raise InputError(f"{directory} is damaged: its weights cannot be read (truncated or corrupted "
                         "weights.* files); use the other checkpoint or train again") from None
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise InputError(f"{directory} does not fit this configuration's model: {error}") from None
    if optimizer is None:
        status.expect_partial()


def read_state(directory: str | os.PathLike) -> dict:
    """The progress record of a checkpoint (epochs completed, best loss, wait)."""
    state = _read(_checked(directory) / "state.json", json.loads)
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise InputError(f"{Path(directory) / 'state.json'} is damaged: it records no epoch")
    return state


def _read(path: Path, parse):
    """``parse`` of a checkpoint's text file, or ``InputError`` if it is damaged."""
    try:
        return parse(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError):
        raise InputError(f"{path} is damaged: it cannot be parsed; use the other checkpoint or train again") from None


def _checked(directory: str | os.PathLike) -> Path:
    """``directory`` after recovering an interrupted rewrite; ``InputError`` unless it holds
    every checkpoint file."""
    directory = Path(directory)
    recover(directory)
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise InputError(f"{directory} is not a training checkpoint (missing {', '.join(missing)}); "
                         "give <run_dir>/checkpoints/best or last")
    return directory
