"""The classifier trainings of the search: what each mode puts in class 0, class 1 and the test set.

    mode        class 0 (template)              class 1                         test set (truth)
    cwola       generated SR background         SR data = background + nsig     SR signal (1) and
    idealized   true extra SR background        signal injected                 SR background (0)
    supervised  SR background                   nsig SR signal                  (the same for all 3)
    two-sample  generated events (SR or SB)     reference events                held-out generated (0)
                                                                                and reference (1)

The CATHODE baseline modes (``workflow.cathode``) train on four high-level features instead of
whole events, on the same SR split and test set: ``cathode`` (a flow's SR template versus SR
data, like cwola), ``idealized-hl`` and ``supervised-hl``. The SR samples come from
``data.selection.split_signal_region``. The template class (generated or extra background) has
``classifier.oversampling`` events per pseudo-data background event (CATHODE's oversampling; the
paper trains 200k generated against 100k data events: 2), at most ``classifier.n_generated``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from lhco_diffusion.config import Config
from lhco_diffusion.data import selection
from lhco_diffusion.data.processed import Events
from lhco_diffusion.data.selection import REGIONS, SignalRegionSplit, warn_if_fewer
from lhco_diffusion.errors import InputError

HIGH_LEVEL_MODES = ("cathode", "idealized-hl", "supervised-hl")  # workflow.cathode
MODES = ("cwola", "idealized", "supervised", "two-sample", *HIGH_LEVEL_MODES)
TWO_SAMPLE_TEST_FRACTION = 0.25  # largest share of either sample held out for the two-sample test


@dataclasses.dataclass
class Task:
    """One classifier training: class 0 and class 1 events, and the test set with truth labels."""

    mode: str
    region: str
    class0: Events
    class1: Events
    test: Events
    nsig: int  # signal events in class 1 (cwola, idealized, supervised), else 0


def signal_region_task(mode: str, config: Config, split: SignalRegionSplit, nsig: int | None = None,
                       generated_path: str | os.PathLike | None = None) -> Task:
    """The training set of ``cwola``, ``idealized`` or ``supervised`` on ``split``.

    ``nsig`` signal events (default: the whole injection pool) join class 1; cwola reads its
    template from the generated events of ``generated_path`` that fall in the SR.
    """
    signal = injected_signal(split, nsig)
    nsig = len(signal)
    settings = config.classifier
    n_template = min(settings.oversampling * len(split.data_background), settings.n_generated)
    if mode == "cwola":
        if generated_path is None:
            raise InputError("mode cwola needs --generated FILE.h5 with generated SR background")
        template = selection.region_events(generated_path, "SR", config, limit=n_template)
        class0, class1 = template, Events.concatenate([split.data_background, signal])
    elif mode == "idealized":
        if len(split.extra_background) == 0:
            raise InputError("no SR background is left for the idealized template; set data.extra_background "
                             "or lower classifier.n_background and n_test_background")
        n_extra = warn_if_fewer(n_template, len(split.extra_background), "extra SR background events")
        class0 = split.extra_background.select(slice(0, n_extra))
        class1 = Events.concatenate([split.data_background, signal])
    elif mode == "supervised":
        class0, class1 = split.data_background, signal
    else:
        raise InputError(f"mode {mode} is not a signal-region mode (cwola, idealized, supervised)")
    test = Events.concatenate([split.test_background, split.test_signal])
    return Task(mode, "SR", class0, class1, test, nsig)


def injected_signal(split: SignalRegionSplit, nsig: int | None = None) -> Events:
    """The first ``nsig`` events of the injection pool (default: all of it); ``InputError`` if
    it holds fewer."""
    pool = split.injection_signal
    nsig = len(pool) if nsig is None else nsig
    if not 0 <= nsig <= len(pool):
        raise InputError(f"--nsig {nsig} exceeds the {len(pool)} SR signal events set aside for "
                         "injection; add it to classifier.nsig or give fewer")
    return pool.select(slice(0, nsig))


def two_sample_task(config: Config, generated_path: str | os.PathLike, region: str,
                    reference_path: str | os.PathLike | None = None,
                    data_path: str | os.PathLike | None = None) -> Task:
    """Generated (class 0) versus reference (class 1) events of ``region`` ("SR" or "SB").

    The reference is ``reference_path``, or else the background of ``data_path`` in the region
    (in the SB only the validation split, which the generative models never saw). The larger
    sample is cut at random to the size of the smaller, so both classes are equal. Up to
    ``classifier.n_test_background`` events of each sample (at most a quarter) are held out as
    the test set, chosen with ``data.seed``.
    """
    if region not in REGIONS:
        raise InputError(f"region must be SR or SB, not {region}")
    generated = _labelled(selection.region_events(generated_path, region, config), 0)
    if reference_path is not None:
        reference = selection.region_events(reference_path, region, config)
    elif data_path is not None:
        reference = selection.reference_background(data_path, region, config)
    else:
        raise InputError("mode two-sample needs --reference FILE.h5 or a processed data file")
    reference = _labelled(reference, 1)
    n_each = min(len(generated), len(reference))
    n_test = warn_if_fewer(config.classifier.n_test_background, int(n_each * TWO_SAMPLE_TEST_FRACTION),
                           "two-sample test events")
    if n_test < 1:
        raise InputError(f"too few generated ({len(generated)}) or reference ({len(reference)}) "
                         f"events in the {region} for a two-sample test")
    rng = np.random.default_rng([config.data.seed, 3])
    parts = [_held_out(_subsample(events, n_each, rng), n_test, rng) for events in (generated, reference)]
    test = Events.concatenate([part[1] for part in parts])
    return Task("two-sample", region, parts[0][0], parts[1][0], test, 0)


def training_split(task: Task, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of ``events_and_labels(task)``, shuffled with ``seed``."""
    n = len(task.class0) + len(task.class1)
    order = np.random.default_rng(seed).permutation(n)
    n_validation = int(round(validation_fraction * n))
    return order[n_validation:], order[:n_validation]


def events_and_labels(task: Task) -> tuple[Events, np.ndarray]:
    """All training events (class 0 first) and their (N,) class labels."""
    labels = np.concatenate([np.zeros(len(task.class0)), np.ones(len(task.class1))]).astype(np.float32)
    return Events.concatenate([task.class0, task.class1]), labels


def events_digest(events: Events) -> str:
    """A short fingerprint of a test set (its jets, mjj and labels): equal digests, equal test sets."""
    digest = hashlib.sha256()
    for array in (events.jets, events.mjj, events.label):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _held_out(events: Events, n_test: int, rng: np.random.Generator) -> tuple[Events, Events]:
    """(training part, ``n_test`` held-out events) of ``events``, chosen at random."""
    order = rng.permutation(len(events))
    return events.select(np.sort(order[n_test:])), events.select(np.sort(order[:n_test]))


def _subsample(events: Events, n: int, rng: np.random.Generator) -> Events:
    """``n`` of ``events`` chosen at random (all of them, in file order, if there are ``n``)."""
    if len(events) == n:
        return events
    return events.select(np.sort(rng.permutation(len(events))[:n]))


def _labelled(events: Events, label: int) -> Events:
    """``events`` with every truth label set to ``label`` (generated 0, reference 1)."""
    return dataclasses.replace(events, label=np.full(len(events), label, np.int8))
