"""The generator a configuration asks for (``config.generator``), with its networks built.

    model = build_generator(config, wrap_tape=distributed.wrap_tape, noise_seed=seed)

Training builds it from the run's config, ``checkpoints.load`` from the config stored in the
checkpoint, so a checkpoint always comes back as the generator that wrote it.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from lhco_diffusion.config import Config
from lhco_diffusion.data import transforms
from lhco_diffusion.models.diffusion import DiffusionModel
from lhco_diffusion.models.flow_matching import FlowMatchingModel
from lhco_diffusion.models.generator import GenerativeModel, _identity


def build_generator(config: Config, wrap_tape: Callable[[tf.GradientTape], tf.GradientTape] = _identity,
                    noise_seed: int = 0) -> GenerativeModel:
    """A ``DiffusionModel`` (transformer networks, ``jet_model``/``particle_model``) or a
    ``FlowMatchingModel`` (``flow_matching_jet_model``/``flow_matching_particle_model``)."""
    options = dict(n_jet_features=transforms.model_jet_features(config.transforms), wrap_tape=wrap_tape,
                   noise_seed=noise_seed)
    if config.generator == "flow_matching":
        return FlowMatchingModel(config.flow_matching_jet_model, config.flow_matching_particle_model,
                                 config.training, **options)
    return DiffusionModel(config.jet_model, config.particle_model, config.training, **options)
