"""Throughput of the CATHODE flow: training (events/s per epoch) and SR sampling (events/s).

    python benchmarks/flow.py [--config configs/lhco_279.yaml] [--events 100000] [--epochs 3] \
        [--samples 200000]

The flow is the configuration's (``flow`` section: the paper-size setting by default), trained on
``--events`` toy feature vectors (gamma-distributed masses, tau21 in (0, 1), mjj uniform over the
sideband) through the same ``flow.fit`` as a real run, with a test split of a fifth of that size.
Training throughput is counted from the second epoch on (the first one traces the graph); the
sampling figure is ``TrainedFlow.sample`` after one warm-up call. For a sideband training split of
n events an epoch takes about n / (the training figure) seconds.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lhco_diffusion import config as config_module  # noqa: E402
from lhco_diffusion.workflow import cathode_flow as flow  # noqa: E402


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall time of every epoch, without validation (that is timed by Keras inside the epoch)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def toy_features(n: int, sideband: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 4), mjj (n,) [GeV]) shaped roughly like QCD dijets."""
    mjj = rng.uniform(*sideband, n)
    mj1 = rng.gamma(4.0, 20.0, n) * mjj / 3500.0
    features = np.stack([mj1, rng.exponential(60.0, n), rng.beta(6, 2, n), rng.beta(6, 2, n)], axis=1)
    return features.astype(np.float32), mjj.astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/lhco_279.yaml")
    parser.add_argument("--events", type=int, default=100_000, help="training events")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed (plus one warm-up)")
    parser.add_argument("--samples", type=int, default=200_000, help="SR events sampled")
    args = parser.parse_args()
    config = config_module.load(args.config, [f"flow.epochs={args.epochs + 1}",
                                              f"flow.early_stopping_patience={args.epochs + 1}"])
    settings, rng = config.flow, np.random.default_rng(0)
    train = toy_features(args.events, config.data.sideband, rng)
    test = toy_features(args.events // 5, config.data.sideband, rng)
    preprocessing = flow.Preprocessing.fit(train[0], config.data.sideband)
    model = flow.build(config)
    timer = EpochTimer()
    flow.fit(model, preprocessing, train, test, settings, callbacks=[timer], verbose=False)
    per_epoch = np.array(timer.seconds[1:])
    print(f"flow ({args.config}): {settings.num_layers} MADE blocks of {list(settings.hidden_units)}, "
          f"{model.count_params():,} weights, batch {settings.batch_size}, {os.cpu_count()} CPU cores")
    print(f"training: {args.events:,} events in {per_epoch.mean():.2f} s per epoch (median of {len(per_epoch)}: "
          f"{np.median(per_epoch):.2f} s) = {args.events / np.median(per_epoch):,.0f} events/s")
    trained = flow.TrainedFlow(model, preprocessing, {})
    mjj = rng.uniform(*config.data.signal_region, args.samples)
    trained.sample(mjj[:1000], seed=0)
    start = time.perf_counter()
    samples = trained.sample(mjj, seed=1)
    seconds = time.perf_counter() - start
    assert np.all(np.isfinite(samples))
    print(f"sampling: {args.samples:,} SR events in {seconds:.2f} s = {args.samples / seconds:,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
