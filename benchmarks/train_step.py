"""Training throughput of the paper-size diffusion models (configs/lhco_279.yaml networks).

    python benchmarks/train_step.py [--steps 5] [--batch-size 128] [--npart 279 30]

For each P it times ``--steps`` training steps (after two untimed warm-up passes that trace every
batch shape) on random model-space events whose multiplicities follow a gamma distribution with
mean 60 and width 25 constituents, clipped to [1, P] (roughly the R=1.0 jets of the LHCO data),
once with every batch padded to P and once with each batch cut to its longest jet
(``data.pad_to_longest``). Prints events/s per configuration.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lhco_diffusion import config as config_module  # noqa: E402
from lhco_diffusion.data.dataset import diffusion_dataset  # noqa: E402
from lhco_diffusion.data.transforms import ModelInputs  # noqa: E402
from lhco_diffusion.models.diffusion import DiffusionModel  # noqa: E402

PAPER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lhco_279.yaml"


def random_inputs(n: int, npart: int, seed: int = 0) -> ModelInputs:
    """n random model-space events with LHCO-like multiplicities (see the module docstring)."""
    rng = np.random.default_rng(seed)
    multiplicity = np.clip(np.rint(rng.gamma(5.76, 60 / 5.76, (n, 2))), 1, npart)
    mask = (np.arange(npart) < multiplicity[..., None]).astype(np.float32)
    particles = rng.normal(size=(n, 2, npart, 3)).astype(np.float32) * mask[..., None]
    return ModelInputs(particles, rng.normal(size=(n, 2, 5)).astype(np.float32),
                       rng.uniform(-1, 1, (n, 1)).astype(np.float32), mask)


def events_per_second(config, npart: int, batch_size: int, steps: int, pad_to_longest: bool) -> float:
    inputs = random_inputs(batch_size * steps, npart)
    model = DiffusionModel(config.jet_model, config.particle_model, config.training)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
    batches = diffusion_dataset(inputs, batch_size, shuffle=True, pad_to_longest=pad_to_longest)
    model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0)  # trace every batch shape
    start = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
    return batch_size * steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--npart", type=int, nargs="+", default=[279, 30])
    args = parser.parse_args()
    config = config_module.load(PAPER_CONFIG)
    print(f"paper-size networks ({PAPER_CONFIG.name}), batch {args.batch_size}, "
          f"{os.cpu_count()} CPU threads, TensorFlow {tf.__version__}")
    for npart in args.npart:
        for pad_to_longest in (False, True):
            rate = events_per_second(config, npart, args.batch_size, args.steps, pad_to_longest)
            padding = "cut to longest jet" if pad_to_longest else f"padded to P={npart}"
            print(f"P={npart:4d}  {padding:22s} {rate:8.1f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
