"""Training checkpoints: everything needed to sample from, or resume, a generator's run.

A checkpoint is a directory (written atomically, by rank 0 only):

    weights.index, weights.data-*   the generator (networks and EMA networks) and the optimizer
    transforms.json                 the model-space statistics (``data.transforms.Stats``)
    config.yaml                     the full configuration the run used
    state.json                      epochs completed, best test loss, epochs since it improved

``<run_dir>/checkpoints/last`` is rewritten after every good epoch, ``best`` whenever the test
loss improves. ``load`` rebuilds the model, diffusion or flow matching, from the stored
configuration alone.
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
from lhco_diffusion.files import atomic_output
from lhco_diffusion.models.build import build_generator
from lhco_diffusion.models.generator import GenerativeModel

WEIGHTS = "weights"
FILES = ("weights.index", "transforms.json", "config.yaml", "state.json")


@dataclasses.dataclass
class Checkpoint:
    """A restored checkpoint: the model (with EMA weights), its transforms, config and progress."""

    model: GenerativeModel
    stats: Stats
    config: Config
    state: dict  # {"epoch": epochs completed, "best_loss": ..., "wait": ...}


def save(directory: str | os.PathLike, model: GenerativeModel, optimizer: tf.keras.optimizers.Optimizer,
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
    config = config_module.from_dict(yaml.safe_load((directory / "config.yaml").read_text()),
                                     source=str(directory / "config.yaml"))
    model = build_generator(config)
    restore(directory, model)
    return Checkpoint(model, Stats.load(directory / "transforms.json"), config, read_state(directory))


def restore(directory: str | os.PathLike, model: GenerativeModel,
            optimizer: tf.keras.optimizers.Optimizer | None = None) -> None:
    """Load a checkpoint's weights into ``model`` (and its state into ``optimizer``, to resume).

    With an optimizer every stored value must find its variable, so a resumed run cannot
    silently continue with a model of another shape.
    """
    directory = _checked(directory)
    objects = {"model": model}
    if optimizer is not None:
        optimizer.build(model.trainable_network_variables)
        objects["optimizer"] = optimizer
    status = tf.train.Checkpoint(**objects).read(str(directory / WEIGHTS))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise InputError(f"{directory} does not fit this configuration's model: {error}") from None
    if optimizer is None:
        status.expect_partial()


def read_state(directory: str | os.PathLike) -> dict:
    """The progress record of a checkpoint (epochs completed, best loss, wait)."""
    return json.loads((_checked(directory) / "state.json").read_text())


def _checked(directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise InputError(f"{directory} is not a training checkpoint (missing {', '.join(missing)}); "
                         "give <run_dir>/checkpoints/best or last")
    return directory
