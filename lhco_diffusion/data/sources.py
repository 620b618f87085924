"""Where the events come from: the raw file of a run, and its prepared (clustered) version.

    raw_file(config)        data.raw, or a synthetic (or Pythia) raw file made once in the cache
    prepare_file(raw, out)  raw LHCO layout -> fastjet -> processed HDF5, streamed chunk by chunk
    processed_file(config)  data.processed, or raw_file(config) prepared once into the cache
    extra_background_file(config)  data.extra_background, prepared once if it is raw

Cached files are named after everything that determines their content, written atomically, and
reused when present, so every entry point can simply ask for ``processed_file(config)``.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import os
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from lhco_diffusion.config import Config, DataConfig, expand
from lhco_diffusion.data import cluster, lhco, processed, regions, synthetic
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output


def raw_file(config: Config, progress: bool = True) -> Path:
    """The run's raw events in the LHCO layout: ``data.raw``, else a generated file in the cache.

    Generated files go to ``<cache_dir>/raw/`` under a name encoding the event counts and seed;
    with ``data.pythia`` they come from ``lhco_diffusion.data.pythia``, else from the numpy toy.
    """
    data = config.data
    if data.raw:
        path = expand(data.raw)
        if not path.is_file():
            raise InputError(f"data.raw file {path} does not exist; see data/README for the download")
        return path
    n_signal = round(data.synthetic_events * data.synthetic_signal_fraction)
    n_background = data.synthetic_events - n_signal
    directory = expand(config.paths.cache_dir) / "raw"
    if data.pythia:
        path = directory / f"pythia_b{n_background}_s{n_signal}_seed{data.seed}.h5"
        if not path.is_file():
            from lhco_diffusion.data import pythia

            pythia.generate(path, n_background, n_signal, data.seed, data.workers)
        return path
    path = directory / synthetic_name(data.synthetic_events, data.synthetic_signal_fraction, data.seed)
    if not path.is_file():
        synthetic.generate_raw(path, data.synthetic_events, data.synthetic_signal_fraction, data.seed,
                               chunk_size=data.chunk_size, progress=progress)
    return path


def synthetic_name(n_events: int, signal_fraction: float, seed: int) -> str:
    """File name of a synthetic raw file: everything its content depends on."""
    return f"synthetic_n{n_events}_sig{signal_fraction:g}_seed{seed}.h5"


def processed_name(raw_path: str | os.PathLike, npart: int) -> str:
    """File name of the prepared version of ``raw_path`` with ``npart`` constituents per jet."""
    return f"{Path(raw_path).stem}_P{npart}.h5"


def processed_file(config: Config, progress: bool = True) -> Path:
    """The run's prepared events: ``data.processed``, else ``raw_file(config)`` prepared once.

    The prepared file lives in ``<cache_dir>/processed/`` and is reused while its jet radius
    and leading-jet cut match the configuration and it holds the jet substructure. Several processes asking at once would each
    prepare it (the file stays consistent: each write is atomic); under Horovod let the root
    rank call it first.
    """
    data = config.data
    if data.processed:
        path = expand(data.processed)
        processed.count(path)  # InputError unless it is a processed event file
        return path
    raw = raw_file(config, progress)
    output = expand(config.paths.cache_dir) / "processed" / processed_name(raw, data.npart)
    if not (output.is_file() and _made_with(output, data)):
        prepare_file(raw, output, data.npart, data.jet_radius, data.min_leading_jet_pt,
                     data.chunk_size, data.workers, progress=progress, data_config=data)
    return output


def extra_background_file(config: Config) -> Path | None:
    """The processed extra SR background (``data.extra_background``), prepared once if it is raw."""
    extra = config.data.extra_background
    if not extra:
        return None
    path = expand(extra)
    if not path.is_file():
        raise InputError(f"data.extra_background file {path} does not exist; see data/README")
    try:
        processed.count(path)
        return path
    except InputError:  # a raw LHCO file: cluster it like the main one
        data = dataclasses.replace(config.data, raw=str(path), processed=None)
        return processed_file(config.replace(data=data))


def prepare_file(raw_path: str | os.PathLike, output_path: str | os.PathLike, npart: int,
                 jet_radius: float, min_leading_jet_pt: float, chunk_size: int, workers: int,
                 progress: bool = True, data_config: DataConfig | None = None) -> dict:
    """Cluster every event of a raw file and write the processed HDF5 file (atomically).

    The raw file is read ``chunk_size`` events at a time; with ``workers`` > 1 the chunks are
    clustered in a process pool with at most two chunks per worker in flight, so memory does
    not grow with the file. Returns ``{"n_read", "n_kept", "SR", "SB", "other", "output"}``,
    the region counts using the regions of ``data_config`` (default: the paper's).
    """
    raw_path, output_path = Path(raw_path), Path(output_path)
    n_events = lhco.count_events(raw_path)
    if n_events == 0:
        raise InputError(f"{raw_path} holds no events")
    if npart < 1 or chunk_size < 1 or workers < 1:
        raise InputError("npart, chunk size and workers must all be at least 1")
    data_config = data_config or DataConfig()
    settings = {"npart": npart, "jet_radius": jet_radius, "min_leading_jet_pt": min_leading_jet_pt}
    ranges = [(start, min(start + chunk_size, n_events)) for start in range(0, n_events, chunk_size)]
    counts = collections.Counter({"n_read": 0, "n_kept": 0, "SR": 0, "SB": 0, "other": 0})
    if progress:
        cluster.print_banner()  # before the progress bar, which it would otherwise break
    attrs = {**settings, "source": str(raw_path)}
    tasks = [(raw_path, start, stop, settings) for start, stop in ranges]
    with _pool(workers) as pool, atomic_output(output_path) as temporary, \
            processed.EventWriter(temporary, npart, attrs) as writer, \
            tqdm(total=n_events, desc="clustering", unit="ev", disable=not progress) as bar:
        for n_read, events in _cluster_in_order(tasks, pool, workers):
            writer.append(events)
            counts.update(n_read=n_read, n_kept=len(events))
            counts.update(regions.region_counts(events.mjj, data_config))
            bar.update(n_read)
        writer.set_attrs(n_read=counts["n_read"], n_kept=counts["n_kept"])
    return {**counts, "output": str(output_path)}


def _pool(workers: int):
    """A process pool for ``workers`` > 1 (forked before any output file is opened), else nothing."""
    return multiprocessing.Pool(workers) if workers > 1 else contextlib.nullcontext()


def _cluster_in_order(tasks: list, pool, workers: int) -> Iterator[tuple[int, processed.Events]]:
    """``(events read, clustered Events)`` per task, in order, at most 2 tasks per worker in flight."""
    if pool is None:
        yield from map(_cluster_range, tasks)
        return
    pending = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(_cluster_range, (task,)))
        if len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _cluster_range(task: tuple[Path, int, int, dict]) -> tuple[int, processed.Events]:
    raw_path, start, stop, settings = task
    particles, label = next(lhco.iter_chunks(raw_path, stop - start, start, stop))
    return len(label), cluster.cluster_events(particles, label, **settings)


def _made_with(path: Path, data: DataConfig) -> bool:
    """Whether a cached prepared file matches the configuration and holds everything ``prepare``
    writes now (files from before the jet substructure or the ``complete`` flag are prepared again)."""
    try:
        attrs = processed.read_attrs(path)
        current = processed.has_substructure(path) and bool(attrs.get(processed.COMPLETE_FLAG, False))
    except InputError:
        return False
    settings = ("npart", "jet_radius", "min_leading_jet_pt")
    return current and all(attrs.get(key) == getattr(data, key) for key in settings)
