"""Which events each step reads: every split of a processed file, decided here and only here.

    sideband_rows(path, data)            file rows of the sideband background, split
                                         train / test / validation (``data.sideband_fractions``,
                                         ``data.seed``): the generators train on "train", stop
                                         early on "test"; "validation" is held out (two-sample
                                         reference, mjj of generated sideband events)
    sideband_background(path, config, "train")   those events, read chunk by chunk
    region_events(path, region, config)  the events of a file (generated or data) in SR or SB
    reference_background(path, region, config)   the data background the generated events of a
                                         region are compared with (SB: the validation split only)
    split_signal_region(config, path)    the disjoint SR samples of the classifier trainings
    mjj_density(path, config)            the KDE of the mjj that SR events are generated at
                                         (the analysis' SR data: background + injection)

Only the per-event columns (mjj, label) are read to choose rows; then only the chosen rows'
particles (``processed.load_rows``), so memory grows with the selection, not with the file.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from lhco_diffusion.config import Config, DataConfig
from lhco_diffusion.data import processed, regions
from lhco_diffusion.data.mjj import MjjSampler
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError

REGIONS = ("SR", "SB")


class SampleSizeWarning(UserWarning):
    """A file holds fewer events than the configuration asks for; the sample was scaled down."""


@dataclasses.dataclass
class SignalRegionSplit:
    """Disjoint signal-region samples of the classifier trainings (``split_signal_region``)."""

    data_background: Events
    extra_background: Events
    test_background: Events
    injection_signal: Events
    test_signal: Events


def columns(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mjj (N,) [GeV], label (N,)) of every complete event of a processed file."""
    values = processed.load_columns(path, ("mjj", "label"))
    return values["mjj"], values["label"]


def region_mask(mjj: np.ndarray, region: str, data_config: DataConfig) -> np.ndarray:
    """(N,) bool: mjj [GeV] in ``region`` ("SR" or "SB")."""
    if region == "SR":
        return regions.signal_region_mask(mjj, data_config)
    if region == "SB":
        return regions.sideband_mask(mjj, data_config)
    raise InputError(f"region must be SR or SB, not {region}")


def sideband_rows(path: str | os.PathLike, data_config: DataConfig) -> dict[str, np.ndarray]:
    """File rows of the sideband background, split ``{"train", "test", "validation"}``."""
    mjj, label = columns(path)
    rows = np.flatnonzero(regions.sideband_mask(mjj, data_config) & (label == 0))
    if len(rows) == 0:
        raise InputError(f"{path} holds no background event in the sideband {list(data_config.sideband)} GeV")
    split = regions.sideband_splits(len(rows), data_config.sideband_fractions, data_config.seed)
    return {name: rows[indices] for name, indices in split.items()}


def sideband_background(path: str | os.PathLike, config: Config, split: str) -> Events:
    """The sideband background events of one split ("train", "test" or "validation")."""
    return processed.load_rows(path, sideband_rows(path, config.data)[split], config.data.npart)


def region_events(path: str | os.PathLike, region: str, config: Config, limit: int | None = None) -> Events:
    """The events of ``path`` in ``region`` (the first ``limit`` of them, with a warning if fewer)."""
    rows = np.flatnonzero(region_mask(columns(path)[0], region, config.data))
    if limit is not None:
        rows = rows[:warn_if_fewer(limit, len(rows), f"events of {Path(path).name} in the {region}")]
    if len(rows) == 0:
        raise InputError(f"{path} holds no events in the {region}")
    return processed.load_rows(path, rows, config.data.npart)


def reference_background(path: str | os.PathLike, region: str, config: Config) -> Events:
    """Background of the data file in ``region``; in the SB its validation split only, which
    the generative models never saw."""
    if region == "SB":
        return sideband_background(path, config, "validation")
    mjj, label = columns(path)
    rows = np.flatnonzero(region_mask(mjj, region, config.data) & (label == 0))
    if len(rows) == 0:
        raise InputError(f"{path} holds no background events in the {region}")
    return processed.load_rows(path, rows, config.data.npart)


def mjj_density(path: str | os.PathLike, config: Config,
                extra_path: str | os.PathLike | None = None) -> MjjSampler:
    """The density of the mjj that SR events are generated at (``data.kde_source``).

    "signal_region": a KDE of the analysis' SR data, the "data" background of
    ``signal_region_rows`` plus its injection pool (the largest ``classifier.nsig``), as in a
    search, where the data are background plus whatever signal they hold. Not every SR event of
    the file: a sample made for studies holds far more signal than any injection (a third of
    the SR events of the Pythia benchmark), and its mass peak would then be in the template.
    "sideband": a KDE of the file's sideband events.
    """
    mjj = columns(path)[0]
    if config.data.kde_source == "sideband":
        values = mjj[region_mask(mjj, "SB", config.data)]
    else:
        rows = signal_region_rows(config, path, extra_path)
        values = mjj[np.concatenate([rows[path, "data"], rows[path, "injection_signal"]])]
    return MjjSampler.fit(values, config.data.kde_bandwidth)


def split_signal_region(config: Config, data_path: str | os.PathLike,
                        extra_path: str | os.PathLike | None = None) -> SignalRegionSplit:
    """Split the SR events of ``data_path`` (and ``extra_path``, SR background only) once, with
    ``data.seed``, into disjoint parts:

        background  "test" (classifier.n_test_background), "data" (n_background), "extra" (idealized)
        signal      "test" (n_test_signal), "injection" pool (largest classifier.nsig)

    With ``extra_path``, "test" and "extra" background come from it and all of the main file's
    SR background is available for "data". The split depends on neither the mode, the injection
    nor the classifier seed, so every score file of a mode shares its test set. When a file
    holds fewer events than configured, the test and data (or test and injection) parts shrink
    in proportion with a ``SampleSizeWarning``; "extra" gets what is left.
    """
    read = _read_parts(signal_region_rows(config, data_path, extra_path), config.data.npart)
    return SignalRegionSplit(
        data_background=read["data"], extra_background=read["extra"], test_background=read["test"],
        injection_signal=read["injection_signal"], test_signal=read["test_signal"],
    )


def signal_region_rows(config: Config, data_path: str | os.PathLike,
                       extra_path: str | os.PathLike | None = None) -> dict[tuple, np.ndarray]:
    """The rows of ``split_signal_region``'s parts, ``{(file path, part name): rows}``, from the
    files' mjj and label columns only (part names: "data", "extra", "test", "injection_signal",
    "test_signal")."""
    settings, seed = config.classifier, config.data.seed
    mjj, label = columns(data_path)
    in_signal_region = regions.signal_region_mask(mjj, config.data)
    background_rows = np.flatnonzero(in_signal_region & (label == 0))
    signal_rows = np.flatnonzero(in_signal_region & (label == 1))
    n_extra = min(settings.n_generated, settings.oversampling * settings.n_background)
    largest_injection = max(settings.nsig, default=0)

    signal = _blocks(np.random.default_rng([seed, 1]).permutation(signal_rows),
                     {"test": settings.n_test_signal, "injection": largest_injection}, {}, "SR signal")
    background = np.random.default_rng([seed, 0]).permutation(background_rows)
    if extra_path is None:
        background = _blocks(background, {"test": settings.n_test_background, "data": settings.n_background},
                             {"extra": n_extra}, "SR background")
        sources_of = dict.fromkeys(background, data_path)
    else:
        extra_rows = np.flatnonzero(regions.signal_region_mask(columns(extra_path)[0], config.data))
        background = _blocks(background, {"data": settings.n_background}, {}, "SR background") | _blocks(
            np.random.default_rng([seed, 2]).permutation(extra_rows), {"test": settings.n_test_background},
            {"extra": n_extra}, "extra SR background")
        sources_of = {"test": extra_path, "extra": extra_path, "data": data_path}
    parts = {(sources_of[name], name): rows for name, rows in background.items()}
    return parts | {(data_path, f"{name}_signal"): rows for name, rows in signal.items()}


def warn_if_fewer(wanted: int, available: int, what: str) -> int:
    """min(wanted, available), with a ``SampleSizeWarning`` when ``available`` falls short."""
    if available < wanted:
        warnings.warn(f"only {available} {what} for the {wanted} configured; using {available}",
                      SampleSizeWarning, stacklevel=3)
    return min(wanted, available)


def _read_parts(parts: dict[tuple, np.ndarray], npart: int) -> dict[str, Events]:
    """``{(path, name): rows}`` -> ``{name: Events}``, reading each file once."""
    read = {}
    for path in dict.fromkeys(path for path, _ in parts):
        names = [name for source, name in parts if source == path]
        blocks = [parts[path, name] for name in names]
        events = processed.load_rows(path, np.concatenate(blocks), npart)
        edges = np.cumsum([len(block) for block in blocks])[:-1]
        for name, rows in zip(names, np.split(np.arange(len(events)), edges)):
            read[name] = events.select(rows)
    return read


def _blocks(rows: np.ndarray, essential: dict[str, int], optional: dict[str, int],
            what: str) -> dict[str, np.ndarray]:
    """Consecutive blocks of ``rows``: the ``essential`` sizes (all scaled down alike, with a
    warning, if rows run short), then the ``optional`` ones from what is left."""
    total = sum(essential.values())
    scale = 1.0 if total <= len(rows) else len(rows) / total
    if scale < 1.0:
        warnings.warn(f"only {len(rows)} {what} events for the {total} configured "
                      f"({', '.join(f'{k} {v}' for k, v in essential.items())}); using {scale:.1%} of each",
                      SampleSizeWarning, stacklevel=3)
    sizes = {name: int(np.floor(n * scale)) for name, n in essential.items()}
    for name, wanted in optional.items():
        sizes[name] = min(wanted, len(rows) - sum(sizes.values()))
    blocks = np.split(rows, np.cumsum(list(sizes.values())))
    return dict(zip(sizes, blocks))
