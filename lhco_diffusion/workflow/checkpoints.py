"""Training checkpoints: everything needed to sample from, or resume, a generator's run.

A checkpoint is a directory (written atomically, by rank 0 only):

    weights.index, weights.data-*   the generator (networks and EMA networks) and the optimizer
    transforms.json                 the model-space statistics (``data.transforms.Stats``)
    config.yaml                     the full configuration the run used
    state.json                      epochs completed, best test loss, epochs since it improved,
                                    number of workers (absent in checkpoints written before it)

``<run_dir>/checkpoints/last`` is rewritten after every good epoch, ``best`` whenever the test
loss improves; each rewrite swaps whole directories (``files.atomic_output``) and every reader
first recovers a swap that was killed midway. ``load`` rebuilds the model, diffusion or flow
matching, from the stored configuration alone. A damaged checkpoint (a truncated or foreign
file) is an ``InputError``.

The checkpoint is the truth about its model: ``run_config`` refuses a command's configuration
whose model-side settings (``MODEL_SECTIONS``, ``MODEL_DATA_KEYS``) differ from the stored ones,
naming the key (``model_difference``; training refuses to resume such a run the same way), while
sampling-side settings (solver, steps, number of events) stay the command's.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import tensorflow as tf
import yaml

from lhco_diffusion import config as config_module
from lhco_diffusion.config import Config, ConfigError
from lhco_diffusion.data.transforms import Stats
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output, recover, write_json
from lhco_diffusion.models.build import build_generator
from lhco_diffusion.models.generator import GenerativeModel

WEIGHTS = "weights"
# Fixed by the trained networks (the generator key, then whole sections).
MODEL_SECTIONS = ("transforms", "jet_model", "particle_model", "flow_matching_jet_model",
                  "flow_matching_particle_model")
# The data settings that decide what the model learned: P, the regions and the sideband splits
# (the held-out split is the sideband reference; the seed draws it).
MODEL_DATA_KEYS = ("npart", "signal_region", "sideband", "sideband_fractions", "seed")
FILES = ("weights.index", "transforms.json", "config.yaml", "state.json")


@dataclasses.dataclass
class Checkpoint:
    """A restored checkpoint: the model (with EMA weights), its transforms, config and progress."""

    model: GenerativeModel
    stats: Stats
    config: Config
    state: dict  # {"epoch": epochs completed, "best_loss": ..., "wait": ..., "workers": ...}


def save(directory: str | os.PathLike, model: GenerativeModel, optimizer: tf.keras.optimizers.Optimizer,
         stats: Stats, config: Config, state: dict) -> None:
    """Write a checkpoint directory atomically (a crash leaves the previous one intact)."""
    with atomic_output(directory) as temporary:
        temporary.mkdir()
        tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(temporary / WEIGHTS))
        stats.save(temporary / "transforms.json")
        (temporary / "config.yaml").write_text(config.to_yaml())
        write_json(temporary / "state.json", state)


def load(directory: str | os.PathLike) -> Checkpoint:
    """Rebuild the model of a checkpoint from its stored configuration and restore its weights."""
    directory = _checked(directory)
    config = stored_config(directory)
    model = build_generator(config)
    restore(directory, model)
    return Checkpoint(model, Stats.load(directory / "transforms.json"), config, read_state(directory))


def stored_config(directory: str | os.PathLike) -> Config:
    """The configuration a checkpoint's model was trained with."""
    directory = _checked(directory)
    try:
        return config_module.from_dict(_read(directory / "config.yaml", yaml.safe_load),
                                       source=str(directory / "config.yaml"))
    except ConfigError as error:  # a key this version no longer has, or a value it no longer accepts
        raise InputError(f"{error}: the checkpoint was written by another version of lhco_diffusion; "
                         "load it with that version, or train again") from None


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


def run_config(checkpoint: Checkpoint, command_config: Config) -> Config:
    """``command_config`` after checking that it agrees with the checkpoint on every model-side
    setting; ``InputError`` naming the first key that differs."""
    difference = model_difference(checkpoint.config, command_config)
    if difference:
        raise InputError(f"{difference}; use the training configuration or drop the key")
    return command_config


def model_difference(stored: Config, given: Config) -> str | None:
    """The first model-side setting (the generator, ``MODEL_SECTIONS``, ``MODEL_DATA_KEYS``) in
    which ``given`` departs from the ``stored`` configuration of a checkpoint, in words; None if
    they agree."""
    stored_values, given_values = stored.to_dict(), given.to_dict()
    if stored_values["generator"] != given_values["generator"]:
        return (f"generator is {given_values['generator']} in {given.source} but the checkpoint holds a "
                f"{stored_values['generator']} model")
    keys = [(section, key) for section in MODEL_SECTIONS for key in stored_values[section]]
    keys += [("data", key) for key in MODEL_DATA_KEYS]
    for section, key in keys:
        if stored_values[section][key] != given_values[section][key]:
            return (f"{section}.{key} is {given_values[section][key]} in {given.source} but the checkpoint's "
                    f"model was trained with {stored_values[section][key]}")
    return None


def read_state(directory: str | os.PathLike) -> dict:
    """The progress record of a checkpoint (epochs completed, best loss, wait)."""
    state = _read(_checked(directory) / "state.json", json.loads)
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise InputError(f"{Path(directory) / 'state.json'} is damaged: it records no epoch")
    return state


def check_workers(directory: str | os.PathLike, state: dict, workers: int, rescale: bool) -> str | None:
    """Refuse to resume ``state`` (of ``directory``) with another number of workers, unless ``rescale``.

    The workers set the global batch, the steps per epoch and (``scale_learning_rate``) the
    learning rate, so a silent change alters the run halfway. Returns a note for the log when
    the stored count is unknown (older checkpoints) or is being rescaled, else None.
    """
    stored = state.get("workers")
    if stored is None:
        return (f"note: {directory} does not record how many workers trained it (written before this was "
                f"stored); continuing with {workers}")
    if stored == workers:
        return None
    if not rescale:
        raise InputError(f"{directory} was trained by {stored} workers but this run has {workers}; resume "
                         f"with {stored} workers, or pass --rescale-workers to continue with {workers}")
    return (f"note: rescaling {directory} from {stored} to {workers} workers: global batch, steps per epoch "
            "and learning rate follow the new count, the cosine decay continues from the same epoch")


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
