"""Background templates: which events to generate, and writing them chunk by chunk.

    mjj = conditioning_mjj(config, data_path, "SR", n, seed)
    summary = write_templates(output, checkpoint, config, data_path, region="SR", n=200_000, ...)
    write_templates(..., region="SR", n=len(mjj), mjj=mjj)      # at given mjj (noise mode; studies)

Generation modes (``sampling.mode``):

    noise        fresh events from noise; SR: mjj from the KDE (``data.kde_source``; by default
                 of the SR data the classifier sees: background + the largest injection)
                 restricted to the SR; SB: mjj of the held-out sideband split (resampled)
    partial-sr   SR data re-diffused from t* with their own mjj
    partial-sb   held-out sideband data re-diffused from t* with SR mjj drawn from the KDE
    partial-ref  a reference file's SR events re-diffused from t* with their own mjj

Partial modes make ``sampling.oversampling`` templates per source event (fresh noise each), at
most ``n``. The output is a processed-schema file written ``batch_size`` events at a time;
chunk k is generated from the seed (seed, k) alone, so a run resumed after k chunks writes
exactly what the uninterrupted run would have. Until the last chunk is written the file is
marked incomplete (``data.processed.EventWriter``) and no reader accepts it.
"""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lhco_diffusion.config import Config
from lhco_diffusion.data import processed, selection, sources
from lhco_diffusion.data.processed import Events
from lhco_diffusion.data.selection import REGIONS
from lhco_diffusion.errors import InputError
from lhco_diffusion.workflow import generation
from lhco_diffusion.workflow.checkpoints import Checkpoint

MODES = ("noise", "partial-sr", "partial-sb", "partial-ref")
_RESUMED_SETTINGS = ("region", "mode", "seed", "batch_size", "n_requested", "t_star", "solver", "num_steps",
                     "exact_mjj", "apply_data_selection", "mjj_given")


def conditioning_mjj(config: Config, data_path: str | os.PathLike, region: str, n: int, seed: int) -> np.ndarray:
    """(n,) mjj [GeV] to generate ``region`` events at (see the module docstring)."""
    if region == "SR":
        density = selection.mjj_density(data_path, config, sources.extra_background_file(config))
        return density.sample(n, config.data.signal_region, seed)
    held_out = selection.columns(data_path)[0][selection.sideband_rows(data_path, config.data)["validation"]]
    return np.random.default_rng(seed).choice(held_out, n, replace=len(held_out) < n)


def source_events(config: Config, data_path: str | os.PathLike, mode: str,
                  reference: str | os.PathLike | None) -> Events:
    """The events a partial mode starts from."""
    if mode == "partial-sb":
        return selection.sideband_background(data_path, config, "validation")
    if mode == "partial-ref" and reference is None:
        raise InputError("mode partial-ref needs --reference FILE.h5")
    return selection.region_events(reference if mode == "partial-ref" else data_path, "SR", config)


def write_templates(output: str | os.PathLike, checkpoint: Checkpoint, config: Config,
                    data_path: str | os.PathLike, region: str, n: int, seed: int, batch_size: int,
                    resume: bool = False, reference: str | os.PathLike | None = None,
                    progress: bool = True, attrs: dict | None = None, mjj: np.ndarray | None = None) -> dict:
    """Generate ``n`` events of ``region`` with ``config.sampling``'s mode, solver and steps into
    ``output`` (processed schema); returns ``{"n", "output", "seconds_per_event"...}``.

    ``mjj`` (n,) [GeV]: generate at these instead of ``conditioning_mjj`` (noise mode only), e.g.
    at the true background's mjj, to judge the generator apart from the KDE (which, fitted to
    data, holds their signal too)."""
    settings = config.sampling
    output = Path(output)
    if region not in REGIONS:
        raise InputError(f"region must be SR or SB, not {region}")
    if settings.mode != "noise" and region != "SR":
        raise InputError(f"mode {settings.mode} makes signal-region templates; use --region SR")
    if n < 1 or batch_size < 1:
        raise InputError(f"the number of events ({n}) and the batch size ({batch_size}) must be at least 1")
    if mjj is not None and (settings.mode != "noise" or np.shape(mjj) != (n,)):
        raise InputError(f"given mjj need sampling.mode noise and one value per event ({n}), not mode "
                         f"{settings.mode} and shape {np.shape(mjj)}")
    if output.exists() and not resume:
        raise InputError(f"{output} exists; pass --resume to complete it or choose another --output")
    plan = _plan(config, data_path, region, n, seed, reference, mjj)
    record = {"region": region, "mode": settings.mode, "seed": seed, "batch_size": batch_size,
              "n_requested": n, "t_star": settings.t_star, "solver": settings.solver,
              "num_steps": settings.num_steps, "exact_mjj": settings.exact_mjj,
              "apply_data_selection": settings.apply_data_selection, "mjj_given": mjj is not None}
    if resume and output.exists():
        _check_resumable(output, record)
    attrs = {**(attrs or {}), **record, "generator": checkpoint.model.process, "config": config.to_yaml(),
             "code_version": importlib.metadata.version("lhco_diffusion")}
    npart = config.data.npart
    with processed.EventWriter(output, npart, attrs, resume=resume) as writer, \
            tqdm(total=len(plan["mjj"]), initial=len(writer), unit="ev", desc=f"generating {region}",
                 disable=not progress) as bar:
        for start in range(len(writer), len(plan["mjj"]), batch_size):
            rows = slice(start, start + batch_size)
            writer.append(_chunk(checkpoint, config, plan, rows, npart, [seed, start // batch_size]))
            bar.update(len(plan["mjj"][rows]))
        return {"n": len(writer), "output": str(output)}


def _plan(config, data_path, region, n, seed, reference, mjj=None) -> dict:
    """The mjj (n,) of every event to make (``mjj`` if given) and, for partial modes, its source
    event index."""
    mode, oversampling = config.sampling.mode, config.sampling.oversampling
    if mode == "noise":
        return {"mjj": conditioning_mjj(config, data_path, region, n, seed) if mjj is None else mjj, "source": None}
    if mode not in MODES:
        raise InputError(f"sampling.mode must be one of {', '.join(MODES)}, not {mode}")
    source = source_events(config, data_path, mode, reference)
    rows = np.tile(np.arange(len(source)), oversampling)[:n]
    if mode == "partial-sb":
        mjj = conditioning_mjj(config, data_path, "SR", len(rows), seed)
    else:
        mjj = source.mjj[rows]
    return {"mjj": mjj, "source": source, "rows": rows}


def _chunk(checkpoint: Checkpoint, config: Config, plan: dict, rows: slice, npart: int, seed) -> Events:
    settings = config.sampling
    mjj = plan["mjj"][rows]
    options = dict(bucket_size=settings.bucket_size, jit_compile=settings.jit_compile,
                   exact_mjj=settings.exact_mjj)

    source = None if plan["source"] is None else plan["source"].select(plan["rows"][rows])

    def make(chunk_rows: np.ndarray, chunk_seed) -> Events:
        """The events of ``chunk_rows`` of this chunk, drawn with ``chunk_seed``."""
        if source is None:
            return generation.generate_events(checkpoint.model, checkpoint.stats, mjj[chunk_rows], npart,
                                              settings.solver, settings.num_steps, chunk_seed, **options)
        return generation.partially_diffuse_events(checkpoint.model, checkpoint.stats, source.select(chunk_rows),
                                                   mjj[chunk_rows], settings.t_star, npart, settings.solver,
                                                   settings.num_steps, chunk_seed, **options)

    if not settings.apply_data_selection:
        return make(np.arange(len(mjj)), seed)
    return generation.selected_events(make, len(mjj), seed, config.data.min_leading_jet_pt)


def _check_resumable(output: Path, record: dict) -> None:
    stored = processed.read_attrs(output)
    changed = [key for key in _RESUMED_SETTINGS if key in stored and _differs(stored[key], record[key])]
    if changed:
        values = ", ".join(f"{key}={stored[key]}" for key in changed)
        raise InputError(f"{output} was started with {values}; resume it with the same settings")


def _differs(stored, wanted) -> bool:
    if isinstance(wanted, float):
        return not np.isclose(float(stored), wanted)
    return str(stored) != str(wanted)
