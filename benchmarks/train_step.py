"""Training throughput of the paper-size generators: diffusion (configs/lhco_279.yaml networks)
and EPiC flow matching (configs/lhco_279_fm.yaml), side by side.

    python benchmarks/train_step.py [--steps 4] [--batch-size 128] [--npart 279 30] \
        [--generator diffusion flow_matching] [--config FILE] [--only NAME ...]

For each P it draws ``data.bucket_window`` batches' worth of random model-space events whose
multiplicities follow a gamma distribution with mean 60 and width 25 constituents, clipped to
[1, P] (roughly the R=1.0 jets of the LHCO data), and times ``--steps`` training steps of
``model.fit`` for each way of batching them:

    padded to P          every batch P slots wide (the original scripts)
    cut to longest jet   each batch cut to its longest jet (``data.pad_to_longest``)
    bucketed             multiplicity buckets (``data.bucketing``, one shuffle window)
    bucketed + XLA       the same with ``training.jit_compile``
    bucketed + XLA + bf16  and ``training.mixed_precision: bfloat16``

Each configuration takes the first ``--steps`` batches of its own pipeline and runs them twice:
once untimed (it traces, and with XLA compiles, every batch shape; its duration is printed as
"warm-up"), then timed. Prints events/s per configuration and the speed-up over padded to P.
``--config FILE`` times that configuration's generator and networks instead of the paper's: on a
CPU, XLA compiles a paper-size step for many minutes per batch shape.
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
from lhco_diffusion.data import transforms  # noqa: E402
from lhco_diffusion.data.dataset import diffusion_dataset  # noqa: E402
from lhco_diffusion.data.transforms import ModelInputs  # noqa: E402
from lhco_diffusion.models.build import build_generator  # noqa: E402
from lhco_diffusion.models.generator import precision_policy  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER_CONFIGS = {"diffusion": CONFIGS / "lhco_279.yaml", "flow_matching": CONFIGS / "lhco_279_fm.yaml"}
# name: (pipeline options of diffusion_dataset, jit_compile, mixed precision)
CONFIGURATIONS = {
    "padded to P": (dict(pad_to_longest=False), False, "float32"),
    "cut to longest jet": (dict(pad_to_longest=True), False, "float32"),
    "bucketed": (dict(bucket_window=True), False, "float32"),
    "bucketed + XLA": (dict(bucket_window=True), True, "float32"),
    "bucketed + XLA + bf16": (dict(bucket_window=True), True, "bfloat16"),
}


def random_inputs(n: int, npart: int, n_jet_features: int, seed: int = 0) -> ModelInputs:
    """n random model-space events with LHCO-like multiplicities (see the module docstring) and
    ``n_jet_features`` per jet (``transforms.model_jet_features``)."""
    rng = np.random.default_rng(seed)
    multiplicity = np.clip(np.rint(rng.gamma(5.76, 60 / 5.76, (n, 2))), 1, npart)
    mask = (np.arange(npart) < multiplicity[..., None]).astype(np.float32)
    particles = rng.normal(size=(n, 2, npart, 3)).astype(np.float32) * mask[..., None]
    return ModelInputs(particles, rng.normal(size=(n, 2, n_jet_features)).astype(np.float32),
                       rng.uniform(-1, 1, (n, 1)).astype(np.float32), mask)


def fixed_batches(inputs: ModelInputs, batch_size: int, steps: int, options: dict, bucket_window: int):
    """The first ``steps`` batches of a pipeline, as a dataset that repeats them."""
    if options.get("bucket_window"):
        options = {**options, "bucket_window": bucket_window}
    batches = list(diffusion_dataset(inputs, batch_size, seed=0, **options).take(steps))
    shapes = [[None, *tensor.shape[1:]] for tensor in batches[0]]
    shapes[0][2] = shapes[3][2] = None  # particles (B, 2, Pb, 3) and mask (B, 2, Pb): Pb varies
    signature = tuple(tf.TensorSpec(shape, tf.float32) for shape in shapes)
    return tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=signature).repeat(), batches


def events_per_second(config, inputs: ModelInputs, batch_size: int, steps: int, configuration) -> tuple[float, float]:
    """(events/s of the timed pass, seconds of the untimed warm-up pass)."""
    options, jit_compile, precision = configuration
    data, batches = fixed_batches(inputs, batch_size, steps, options, config.data.bucket_window)
    with precision_policy(precision):
        model = build_generator(config)
    if options.get("bucket_window"):
        model.real_particles_per_event = float(inputs.mask.sum(axis=(1, 2)).mean())
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4), jit_compile=jit_compile)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)  # trace (compile) every batch shape
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    events = sum(len(batch[2]) for batch in batches)
    return events / (time.perf_counter() - start), warm_up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--npart", type=int, nargs="+", default=[279, 30])
    parser.add_argument("--only", nargs="+", choices=list(CONFIGURATIONS), default=list(CONFIGURATIONS))
    parser.add_argument("--generator", nargs="+", choices=list(PAPER_CONFIGS), default=list(PAPER_CONFIGS))
    parser.add_argument("--config", type=Path, help="time this configuration's generator and networks instead "
                        "of the paper's (smaller networks make the XLA compilation affordable on a CPU)")
    args = parser.parse_args()
    configs = [config_module.load(args.config)] if args.config else [
        config_module.load(PAPER_CONFIGS[generator]) for generator in args.generator]
    print(f"{args.config.name if args.config else 'paper-size'} networks, batch {args.batch_size}, "
          f"{args.steps} timed steps, {os.cpu_count()} CPU threads, TensorFlow {tf.__version__}")
    for config in configs:
        generator = config.generator
        for npart in args.npart:
            inputs = random_inputs(args.batch_size * config.data.bucket_window, npart,
                                   transforms.model_jet_features(config.transforms))
            padded = None
            for name in args.only:
                rate, warm_up = events_per_second(config, inputs, args.batch_size, args.steps, CONFIGURATIONS[name])
                padded = padded or (rate if name == "padded to P" else None)
                ratio = f"{rate / padded:5.2f}x" if padded else "   - "
                print(f"{generator:13s} P={npart:4d}  {name:24s} {rate:8.1f} events/s  {ratio}  "
                      f"(warm-up {warm_up:5.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
