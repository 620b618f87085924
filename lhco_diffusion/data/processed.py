"""The processed-event HDF5 schema (DESIGN.md, Data) shared by prepare, sample and classify.

One file holds N dijet events:

    particles  float32 (N, 2, P, 3)   pT_rel, deta, dphi of each jet's constituents, pT-ordered,
                                      zeros for padding (a particle is real iff pT_rel > 0)
    jets       float32 (N, 2, 5)      pT [GeV], eta, phi, mass [GeV], n_constituents
    mjj        float32 (N,)           dijet invariant mass [GeV]
    label      int8    (N,)           1 signal, 0 background (generated events: 0)

optionally (written by ``prepare``; generated events and older files lack it)

    jet_substructure  float32 (N, 2, 3)   N-subjettiness tau1, tau2, tau3 of each jet (exclusive-kT
                                          axes, beta = 1, R0 = 1: ``data.substructure``), from all of
                                          the jet's constituents, not only the P stored

and attrs: ``format_version``, ``npart`` (P), ``jet_radius``, ``source``, ``n_read``, ``n_kept``,
``complete``, plus whatever the writer adds (config YAML, checkpoint, seed ...).

``EventWriter`` appends chunk by chunk and records after every chunk how many events are
complete, so a killed writer can be resumed without losing or duplicating events; ``complete``
turns true only when the writer finishes. Every reader (``count``, ``load``, ``load_columns``)
refuses a file that is not complete, naming the command that completes it (the writer's
``resume_command`` attr), and every block of events ``load`` reads must pass ``validate``: a
damaged or doctored file is an ``InputError`` naming the file and the events, never NaNs passed on.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from lhco_diffusion.data.layout import JET_FEATURES, N_INDEX, PARTICLE_FEATURES
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import writable_directory

FORMAT_VERSION = 1
DATASETS = ("particles", "jets", "mjj", "label")
SUBSTRUCTURE = "jet_substructure"  # the optional dataset
N_TAU = 3  # tau1, tau2, tau3
_COMPLETE = "n_complete"  # attr: the events written so far
COMPLETE_FLAG = "complete"  # attr: true once the writer closed the file
READ_CHUNK = 50_000  # events read at a time by the streaming readers
RESUME_COMMAND = "resume_command"  # attr: the command that completes an interrupted file


@dataclasses.dataclass
class Events:
    """A block of dijet events in physical units (see the module docstring for shapes)."""

    particles: np.ndarray
    jets: np.ndarray
    mjj: np.ndarray
    label: np.ndarray
    substructure: np.ndarray | None = None  # (N, 2, 3) tau1, tau2, tau3, if known

    def __post_init__(self):
        self.particles = np.asarray(self.particles, np.float32)
        self.jets = np.asarray(self.jets, np.float32)
        self.mjj = np.asarray(self.mjj, np.float32)
        self.label = np.asarray(self.label, np.int8)
        if self.substructure is not None:
            self.substructure = np.asarray(self.substructure, np.float32)

    def __len__(self) -> int:
        return len(self.mjj)

    @property
    def npart(self) -> int:
        """P, the padded number of constituent slots per jet."""
        return self.particles.shape[2]

    @property
    def mask(self) -> np.ndarray:
        """(N, 2, P) bool: True for real constituents."""
        return self.particles[..., 0] > 0

    def select(self, index) -> "Events":
        """The events at ``index`` (a slice, integer array or boolean mask)."""
        substructure = None if self.substructure is None else self.substructure[index]
        return Events(self.particles[index], self.jets[index], self.mjj[index], self.label[index], substructure)

    def assign(self, index, other: "Events") -> None:
        """Overwrite the events at ``index`` with ``other`` (same P); the substructure is kept only
        if both have it."""
        for name in DATASETS:
            getattr(self, name)[index] = getattr(other, name)
        if self.substructure is not None and other.substructure is not None:
            self.substructure[index] = other.substructure
        else:
            self.substructure = None

    @staticmethod
    def concatenate(blocks: "list[Events]") -> "Events":
        """All events of ``blocks`` in order (they must share P); substructure only if every
        block has it."""
        substructure = None
        if all(block.substructure is not None for block in blocks):
            substructure = np.concatenate([block.substructure for block in blocks])
        return Events(*(np.concatenate([getattr(b, name) for b in blocks]) for name in DATASETS), substructure)


def validate(events: Events, mjj_range: tuple[float, float] | None = None) -> None:
    """Raise ``InputError`` unless ``events`` obey the schema.

    Checks shapes, finiteness, that jet pT and mass, mjj and the substructure are not negative,
    that labels are 0 or 1, that n_constituents equals the number of real particles, that
    padding slots are exactly zero and come after the real particles, and (optionally) that every
    mjj lies inside ``mjj_range`` [GeV].
    """
    n = len(events)
    expected = {
        "particles": (n, 2, events.npart, len(PARTICLE_FEATURES)),
        "jets": (n, 2, len(JET_FEATURES)),
        "label": (n,),
    }
    if events.substructure is not None:
        expected["substructure"] = (n, 2, N_TAU)
    for name, shape in expected.items():
        if getattr(events, name).shape != shape:
            raise InputError(f"{name} has shape {getattr(events, name).shape}, expected {shape}")
    for name in ("particles", "jets", "mjj", "substructure"):
        if getattr(events, name) is not None and not np.all(np.isfinite(getattr(events, name))):
            raise InputError(f"{name} contains NaN or infinite values")
    non_negative = {"jet pT": events.jets[..., 0], "jet mass": events.jets[..., 3], "mjj": events.mjj,
                    "substructure": events.substructure}
    for name, values in non_negative.items():
        if values is not None and np.any(values < 0):
            raise InputError(f"{name} has negative values")
    if np.any((events.label != 0) & (events.label != 1)):
        raise InputError("labels must be 0 or 1")
    mask = events.mask
    counts = mask.sum(axis=-1)
    if not np.array_equal(counts, np.rint(events.jets[..., N_INDEX]).astype(counts.dtype)):
        raise InputError("n_constituents does not equal the number of real particles in every jet")
    if np.any(events.particles[~mask] != 0):
        raise InputError("padded particle slots must be exactly zero")
    if np.any(mask[..., 1:] & ~mask[..., :-1]):
        raise InputError("real particles must come before the padding in every jet")
    if mjj_range is not None:
        low, high = mjj_range
        if n and (events.mjj.min() < low or events.mjj.max() > high):
            raise InputError(f"mjj values fall outside [{low}, {high}] GeV")


def read_attrs(path: str | os.PathLike) -> dict:
    """The attrs of a processed file, with bytes decoded to str."""
    with _open(path) as file:
        return {key: _decode(value) for key, value in file.attrs.items()}


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists and was written to the end (an ``EventWriter`` that finished)."""
    return Path(path).exists() and bool(read_attrs(path).get(COMPLETE_FLAG, False))


def count(path: str | os.PathLike) -> int:
    """Number of events in a complete processed file."""
    with _open(path, complete=True) as file:
        return _count(file)


def has_substructure(path: str | os.PathLike) -> bool:
    """Whether a processed file holds the optional ``jet_substructure`` dataset."""
    with _open(path) as file:
        return SUBSTRUCTURE in file


def load_columns(path: str | os.PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-event datasets (``jets``, ``mjj``, ``label``, ``jet_substructure``) of all complete
    events of a processed file, without reading the particles."""
    with _open(path, complete=True) as file:
        missing = [name for name in names if name not in file]
        if missing:
            raise InputError(f"{path} has no {', '.join(missing)}; prepare it again with this version")
        return {name: _read(file, name, slice(0, _count(file)), path) for name in names}


def resize(events: Events, npart: int) -> Events:
    """``events`` with exactly ``npart`` particle slots per jet: the leading ``npart`` particles
    kept, or zero slots appended.

    Truncating drops constituents, so the stored jets then no longer equal the sum of the kept
    particles; n_constituents is clipped to ``npart`` to keep the mask consistent.
    """
    particles = events.particles[:, :, :npart]
    particles = np.pad(particles, ((0, 0), (0, 0), (0, npart - particles.shape[2]), (0, 0)))
    jets = events.jets.copy()
    jets[..., N_INDEX] = np.minimum(jets[..., N_INDEX], npart)
    return dataclasses.replace(events, particles=particles, jets=jets)


def load(path: str | os.PathLike, start: int = 0, stop: int | None = None,
         npart: int | None = None) -> Events:
    """Events ``start:stop`` of a processed file, fitted to ``npart`` slots per jet (``resize``;
    default: the file's P). The substructure is read when the file has it. ``InputError`` for an
    incomplete or damaged file, or events that fail ``validate``.
    """
    with _open(path, complete=True) as file:
        stop = min(_count(file) if stop is None else stop, _count(file))
        rows = slice(start, stop)
        keep = (rows, slice(None), slice(None) if npart is None else slice(0, npart))
        arrays = [_read(file, name, keep if name == "particles" else rows, path) for name in DATASETS]
        substructure = _read(file, SUBSTRUCTURE, rows, path) if SUBSTRUCTURE in file else None
    events = Events(*arrays, substructure)
    if npart is not None:  # validate what was read: a cut jet keeps its full count until resized
        events.jets[..., N_INDEX] = np.minimum(events.jets[..., N_INDEX], events.npart)
    try:
        validate(events)
    except InputError as error:
        raise InputError(f"{path} is damaged: in events {start}-{stop - 1}, {error}") from None
    return events if npart is None else resize(events, npart)


def load_rows(path: str | os.PathLike, rows, npart: int | None = None) -> Events:
    """The events at ``rows`` (integer indices) of a processed file, in the order of ``rows``.

    Reads ``READ_CHUNK`` events at a time, so memory holds one chunk plus the selected events.
    """
    rows = np.asarray(rows, np.int64)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    blocks = []
    for chunk in np.unique(ordered // READ_CHUNK):
        inside = ordered[(ordered >= chunk * READ_CHUNK) & (ordered < (chunk + 1) * READ_CHUNK)]
        block = load(path, int(inside[0]), int(inside[-1]) + 1, npart)
        blocks.append(block.select(inside - inside[0]))
    if not blocks:
        blocks = [load(path, 0, 0, npart)]
    return Events.concatenate(blocks).select(np.argsort(order, kind="stable"))


def chunks(path: str | os.PathLike, npart: int | None = None, size: int = READ_CHUNK,
           limit: int | None = None) -> Iterator[Events]:
    """The complete events of a processed file (the first ``limit``), ``size`` at a time."""
    n = count(path) if limit is None else min(count(path), limit)
    for start in range(0, n, size):
        yield load(path, start, min(start + size, n), npart)


class EventWriter:
    """Append ``Events`` to a processed file, resumable after a crash.

    ``EventWriter(path, npart, attrs)`` creates the file (replacing an old one);
    ``EventWriter(path, npart, resume=True)`` reopens it and continues after the last complete
    chunk. Use as a context manager; ``len(writer)`` is the number of complete events.
    ``jet_substructure`` is written when the first chunk carries it, and then every chunk must.
    Leaving the ``with`` block normally (or ``close()``) marks the file complete; leaving it
    with an exception keeps it incomplete for a resume, except that a file this writer created
    and wrote no event to is deleted.
    """

    def __init__(self, path: str | os.PathLike, npart: int, attrs: dict | None = None,
                 resume: bool = False):
        self.path = Path(path)
        writable_directory(self.path.parent)
        self._created = not (resume and self.path.exists())
        if not self._created:
            self._file = h5py.File(self.path, "a")
            complete = int(self._file.attrs.get(_COMPLETE, 0))
            for name in self._datasets():  # drop a chunk that was half written when the run died
                self._file[name].resize(complete, axis=0)
        else:
            self._file = h5py.File(self.path, "w")
            shapes = {
                "particles": ((2, npart, len(PARTICLE_FEATURES)), np.float32),
                "jets": ((2, len(JET_FEATURES)), np.float32),
                "mjj": ((), np.float32),
                "label": ((), np.int8),
            }
            for name, (tail, dtype) in shapes.items():
                self._create(name, tail, dtype)
            self._file.attrs["format_version"] = FORMAT_VERSION
            self._file.attrs["npart"] = npart
            self._file.attrs[_COMPLETE] = 0
        self._file.attrs[COMPLETE_FLAG] = False
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value
        self._file.flush()  # a run killed before its first chunk leaves a readable file to resume

    def __len__(self) -> int:
        return int(self._file.attrs[_COMPLETE])

    def append(self, events: Events) -> None:
        """Write ``events`` after the complete ones and mark them complete."""
        start = len(self)
        stop = start + len(events)
        has_substructure = SUBSTRUCTURE in self._file
        if events.substructure is not None and not has_substructure and start == 0:
            self._create(SUBSTRUCTURE, (2, N_TAU), np.float32)
        elif (events.substructure is not None) != has_substructure:
            raise InputError(f"{self.path} {'holds' if has_substructure else 'lacks'} jet substructure, "
                             f"the events appended to it {'lack' if has_substructure else 'carry'} it")
        arrays = {name: getattr(events, name) for name in DATASETS}
        if events.substructure is not None:
            arrays[SUBSTRUCTURE] = events.substructure
        for name, values in arrays.items():
            dataset = self._file[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
        self._file.attrs[_COMPLETE] = stop
        self._file.flush()

    def set_attrs(self, **attrs) -> None:
        """Record run metadata (config YAML, counts, seeds ...) in the file's attrs."""
        for key, value in attrs.items():
            self._file.attrs[key] = value

    def close(self) -> None:
        """Mark the file complete and close it."""
        self._file.attrs[COMPLETE_FLAG] = True
        self._file.close()

    def _abandon(self) -> None:
        """Close after a failure: the file stays incomplete, or goes if it never held an event."""
        nothing_written = self._created and len(self) == 0
        self._file.close()
        if nothing_written:
            self.path.unlink()

    def _datasets(self) -> list[str]:
        return [name for name in (*DATASETS, SUBSTRUCTURE) if name in self._file]

    def _create(self, name: str, tail: tuple[int, ...], dtype) -> None:
        """An empty, growable per-event dataset with event shape ``tail``."""
        self._file.create_dataset(
            name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
            chunks=(max(1, min(1024, 2**22 // (4 * int(np.prod(tail or (1,)))))), *tail),
            compression="lzf",
        )

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abandon()


def _open(path: str | os.PathLike, complete: bool = False) -> h5py.File:
    """The processed file at ``path`` opened for reading, its layout checked (and with
    ``complete``, that its writer finished); ``InputError`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"processed file {path} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        file = h5py.File(path, "r")
    except OSError:
        raise InputError(f"{path} cannot be read as HDF5 (not an HDF5 file, or truncated)") from None
    try:
        _check_layout(file, path)
        if complete:
            _check_complete(file, path)
    except BaseException:
        file.close()
        raise
    return file


def _check_layout(file: h5py.File, path: Path) -> None:
    missing = [name for name in DATASETS if name not in file]
    if missing:
        raise InputError(f"{path} is not a processed event file (missing {', '.join(missing)})")
    tails = {"particles": (2, None, len(PARTICLE_FEATURES)), "jets": (2, len(JET_FEATURES)), "mjj": (),
             "label": (), SUBSTRUCTURE: (2, N_TAU)}
    for name, tail in tails.items():
        if name in file and (file[name].ndim != 1 + len(tail) or any(
                size not in (None, actual) for size, actual in zip(tail, file[name].shape[1:]))):
            raise InputError(f"{path} is not a processed event file ({name} has shape {file[name].shape})")
    if _count(file) > min(file[name].shape[0] for name in tails if name in file):
        raise InputError(f"{path} is damaged: it records {_count(file)} events but holds fewer")


def _check_complete(file: h5py.File, path: Path) -> None:
    if bool(file.attrs.get(COMPLETE_FLAG, False)):
        return
    if COMPLETE_FLAG not in file.attrs:
        raise InputError(f"{path} does not record that it was written completely (an interrupted run or an "
                         "older version of lhco_diffusion); write it again")
    command = _decode(file.attrs.get(RESUME_COMMAND, ""))
    how = f"complete it with `{command}`" if command else "write it again"
    raise InputError(f"{path} is incomplete: the run writing it stopped after {_count(file)} events; {how}")


def _count(file: h5py.File) -> int:
    return int(file.attrs.get(_COMPLETE, file["mjj"].shape[0]))


def _read(file: h5py.File, name: str, index, path: Path) -> np.ndarray:
    """``file[name][index]``, or ``InputError`` if the stored bytes cannot be read."""
    try:
        return file[name][index]
    except OSError:
        raise InputError(f"{path} is damaged: its {name} cannot be read") from None


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value
