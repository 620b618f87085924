"""Run ``python -m lhco_diffusion.train`` under horovodrun and record what each rank did.

    horovodrun -np 2 --gloo python tests/horovod_probe.py PROBE_DIR --config ... [--set ...]

Each rank writes PROBE_DIR/rank<r>.json (rank, size, the training-event indices of its shard,
the number of training events, the optimizer steps it took) and PROBE_DIR/weights<r>.npy (its final network and EMA weights, flattened; the loss
trackers are per-rank by design), so
the test can compare the ranks. The package itself is run unchanged; only ``dataset.shard`` is
wrapped to observe which events each rank drew.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lhco_diffusion import distributed
from lhco_diffusion.commands import train
from lhco_diffusion.data import dataset
from lhco_diffusion.models.generator import GenerativeModel

probe = Path(sys.argv[1])
seen = {}
shard = dataset.shard


def recording_shard(n, rank, size):
    indices = shard(n, rank, size)
    seen.setdefault("calls", []).append({"n": int(n), "indices": indices.tolist()})
    return indices


dataset.shard = recording_shard
fit = GenerativeModel.fit


def recording_fit(model, *args, **kwargs):
    history = fit(model, *args, **kwargs)
    networks = (model.jet_network, model.particle_network, model.ema_jet_network, model.ema_particle_network)
    seen["weights"] = np.concatenate([w.ravel() for network in networks for w in network.get_weights()])
    seen["steps"] = int(model.optimizer.iterations.numpy())
    return history


GenerativeModel.fit = recording_fit
code = train.main(sys.argv[2:])
context = distributed.current()
train_call = seen["calls"][0]  # the training split's dataset is built first
(probe / f"rank{context.rank}.json").write_text(json.dumps(
    {"rank": context.rank, "size": context.size, "shard": train_call["indices"], "n_train": train_call["n"],
     "steps": seen["steps"]}))
np.save(probe / f"weights{context.rank}.npy", seen["weights"])
sys.exit(code)
