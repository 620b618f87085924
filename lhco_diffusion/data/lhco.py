"""The raw LHC Olympics R&D layout: read it in chunks, validate it, write it.

The R&D file (``events_anomalydetection_v2.h5``) is a pandas HDF file with key ``df`` and one
row per event:

    columns 0 .. 2099   700 particles x (pT [GeV], eta, phi), pT-ordered, zero-padded
    column  2100        label: 1 signal, 0 background

The real file uses pandas' "fixed" format; ``write_raw`` writes that format too, while
``RawWriter`` appends chunks in the "table" format so large synthetic files never sit in memory.
Both are read back the same way, chunk by chunk, with ``pandas.read_hdf(start=..., stop=...)``,
and both are written blosc-compressed (the zero padding shrinks about sevenfold at no cost).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import tables

from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output

KEY = "df"
MAX_PARTICLES = 700
N_COLUMNS = 3 * MAX_PARTICLES + 1
CORRUPT_ABS_ETA = 20.0  # no detector reaches this far; beyond about 700, sinh(eta) overflows the four-momentum
COMPRESSION = {"complib": "blosc:lz4", "complevel": 5}  # mostly zero padding: ~7x smaller, as fast


def count_events(path: str | os.PathLike) -> int:
    """Number of events (rows) in a raw file; validates the layout without reading the data."""
    return _layout(path)[0]


def iter_chunks(path: str | os.PathLike, chunk_size: int, start: int = 0,
                stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(particles (n, 700, 3) [pT GeV, eta, phi], label (n,) int8)`` chunk by chunk.

    Events ``start:stop`` are read ``chunk_size`` rows at a time, so memory stays bounded for
    the 1.1M-event file; particles keep the file's float type. Raises ``InputError`` for a
    missing, unreadable or non-LHCO file and for a chunk that a valid file cannot hold: NaN or
    infinite values (naming its events), a negative pT or a label other than 0 and 1 (naming
    the first such event's row).
    """
    if chunk_size < 1:
        raise InputError(f"chunk size must be at least 1, not {chunk_size}")
    n_events = _layout(path)[0]
    stop = n_events if stop is None else min(stop, n_events)
    for first in range(start, stop, chunk_size):
        last = min(first + chunk_size, stop)
        try:
            values = pd.read_hdf(path, KEY, start=first, stop=last).to_numpy()
        except (OSError, tables.HDF5ExtError):
            raise InputError(f"{path} is damaged: events {first}-{last - 1} cannot be read") from None
        particles, label = values[:, :-1].reshape(len(values), MAX_PARTICLES, 3), values[:, -1]
        _check_chunk(path, first, last, particles, label)
        yield particles, label.astype(np.int8)


def write_raw(path: str | os.PathLike, particles: np.ndarray, label: np.ndarray) -> None:
    """Write events in the R&D layout (pandas "fixed" format, like the real file), atomically.

    particles: (N, 700, 3) [pT GeV, eta, phi], pT-ordered and zero-padded; label: (N,) 0/1.
    """
    frame = _frame(particles, label)
    with atomic_output(path) as temporary:
        frame.to_hdf(temporary, key=KEY, mode="w", format="fixed", **COMPRESSION)


class RawWriter:
    """Append chunks of events to a raw file in the "table" format (bounded memory).

    Use as a context manager around ``atomic_output``'s temporary path::

        with atomic_output(path) as temporary, RawWriter(temporary) as writer:
            writer.append(particles, label)
    """

    def __init__(self, path: str | os.PathLike):
        self._store = pd.HDFStore(path, mode="w", **COMPRESSION)

    def append(self, particles: np.ndarray, label: np.ndarray) -> None:
        """Add events: particles (n, 700, 3) [pT GeV, eta, phi], label (n,) 0/1."""
        with warnings.catch_warnings():  # 2101 columns exceed PyTables' advisory limit of 512
            warnings.simplefilter("ignore", tables.PerformanceWarning)
            self._store.append(KEY, _frame(particles, label), format="table", index=False)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "RawWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pad_by_pt(group: np.ndarray, pt: np.ndarray, values: np.ndarray, n_groups: int,
              width: int) -> tuple[np.ndarray, np.ndarray]:
    """Scatter ragged particles into a zero-padded array, highest pT first within each group.

    group: (M,) int group (event or jet) of each particle; pt: (M,) sort key; values: (M, k).
    Returns ``(padded (n_groups, width, k), counts (n_groups,))`` where ``counts`` is the number
    of particles each group had before truncation to ``width``.
    """
    step = np.diff(group)
    if np.any(step < 0) or np.any((step == 0) & (np.diff(pt) > 0)):  # not already in that order
        order = np.lexsort((-pt, group))
        group, values = group[order], values[order]
    counts = np.bincount(group, minlength=n_groups)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(group)) - first[group]
    keep = rank < width
    padded = np.zeros((n_groups, width, values.shape[1]), dtype=values.dtype)
    padded[group[keep], rank[keep]] = values[keep]
    return padded, counts


def _check_chunk(path, first: int, last: int, particles: np.ndarray, label: np.ndarray) -> None:
    """``InputError`` unless raw events ``first:last`` are finite, have pT >= 0, real particles
    (pT > 0) within |eta| <= CORRUPT_ABS_ETA, and labels 0 or 1."""
    if not (np.all(np.isfinite(particles)) and np.all(np.isfinite(label))):
        raise InputError(f"{path} has NaN or infinite values in events {first}-{last - 1}")
    far_forward = (particles[..., 0] > 0) & (np.abs(particles[..., 1]) > CORRUPT_ABS_ETA)
    for bad, what in ((np.any(particles[..., 0] < 0, axis=1), "a negative particle pT"),
                      (np.any(far_forward, axis=1), f"a particle at |eta| above {CORRUPT_ABS_ETA:g}"),
                      ((label != 0) & (label != 1), "a label other than 0 or 1")):
        if np.any(bad):
            raise InputError(f"{path} has {what} in event {first + int(np.argmax(bad))} (row of key '{KEY}'), "
                             "so the file is corrupted")


def _frame(particles: np.ndarray, label: np.ndarray) -> pd.DataFrame:
    particles = np.asarray(particles)
    if particles.ndim != 3 or particles.shape[1:] != (MAX_PARTICLES, 3):
        raise InputError(f"raw particles must have shape (N, {MAX_PARTICLES}, 3), not {particles.shape}")
    if len(label) != len(particles):
        raise InputError(f"{len(label)} labels were given for {len(particles)} events")
    dtype = np.float32 if particles.dtype == np.float32 else np.float64
    columns = [particles.reshape(len(particles), -1), np.reshape(label, (-1, 1))]
    return pd.DataFrame(np.concatenate(columns, axis=1).astype(dtype, copy=False))


def _layout(path: str | os.PathLike) -> tuple[int, int]:
    """(events, columns) of a raw file, or ``InputError`` if it is not the R&D layout."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"raw file {path} does not exist")
    try:
        store = pd.HDFStore(path, mode="r")
    except (OSError, tables.HDF5ExtError):
        raise InputError(f"{path} is not an HDF5 file") from None
    with store:
        if f"/{KEY}" not in store.keys():
            keys = ", ".join(key.lstrip("/") for key in store.keys()) or "none"
            raise InputError(f"{path} has no pandas key '{KEY}' (keys: {keys}); is it an LHCO R&D file?")
        storer = store.get_storer(KEY)
        n_events, n_columns = (storer.nrows, storer.ncols) if storer.is_table else storer.shape
    if n_columns != N_COLUMNS:
        raise InputError(
            f"{path} has {n_columns} columns per event, expected {N_COLUMNS} "
            f"({MAX_PARTICLES} particles x (pT, eta, phi) + label)"
        )
    return int(n_events), int(n_columns)
