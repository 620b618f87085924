"""Flat numpy arrays in and out of fastjet's vectorised (multi-event) interface.

fastjet clusters many "events" in one C++ call when they arrive as one awkward array of lists of
(px, py, pz, E) records. The preparation keeps everything else in flat numpy arrays with per-event
counts, so these helpers build that array and read fastjet's answers back through the awkward
layouts directly: no awkward operation runs per call, only a few numpy copies.

    sequence = cluster(momenta, counts, definition)    # momenta (M, 4), counts (n,): n events
    jet_momenta, jets_per_event = flat_momenta(sequence.inclusive_jets(0.0))
    members, members_per_list = flat_lists(sequence.constituent_index(0.0))
"""
from __future__ import annotations

import awkward as ak
import fastjet
import numpy as np

COMPONENTS = ("px", "py", "pz", "E")


def cluster(momenta: np.ndarray, counts: np.ndarray, definition: fastjet.JetDefinition) -> fastjet.ClusterSequence:
    """fastjet's clustering of ``len(counts)`` events in one call.

    momenta: (M, 4) float64 [px, py, pz, E] [GeV], event after event, ``counts[i]`` of them in event i.
    """
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    columns = [ak.contents.NumpyArray(np.ascontiguousarray(column, np.float64)) for column in momenta.T]
    events = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets),
                                                  ak.contents.RecordArray(columns, list(COMPONENTS))))
    return fastjet.ClusterSequence(events, definition)


def flat_momenta(jets: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(momenta (J, 4) float64 [px, py, pz, E], counts (n,))`` of fastjet's per-event jets."""
    offsets = np.asarray(jets.layout.offsets)
    records = jets.layout.content
    momenta = np.stack([records.content(name).data[offsets[0]:offsets[-1]] for name in COMPONENTS], axis=1)
    return momenta, np.diff(offsets)


def flat_lists(nested: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(values (K,), lengths (L,))`` of fastjet's per-event lists of lists (e.g. the constituent
    indices of each jet), the L inner lists of all events one after the other."""
    outer = np.asarray(nested.layout.offsets)
    inner = nested.layout.content
    offsets = np.asarray(inner.offsets)[outer[0]:outer[-1] + 1]
    return inner.content.data[offsets[0]:offsets[-1]], np.diff(offsets)
