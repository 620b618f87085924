"""Pseudo-LHCO events from Pythia 8, written in the raw LHC Olympics R&D layout.

Where the R&D file cannot be downloaded, this makes events of the same kind with Pythia 8 (the
optional ``pythia8mc`` package, extra ``pythia``); ``prepare`` then treats the output exactly like
the real file. 13 TeV pp collisions with Pythia's defaults (Monash tune, multiparton interactions,
initial- and final-state showers, hadronisation and decays all on):

- background (label 0): QCD dijets, all hard-QCD 2 -> 2 processes with pT-hat > 1.1 TeV;
- signal (label 1): the R&D benchmark W' -> X Y, X -> qq, Y -> qq with m(W') = 3.5 TeV,
  m(X) = 500 GeV, m(Y) = 100 GeV. Pythia's W' (sequential-SM couplings; its width, 5 % of the
  mass, and the parton densities give mjj a low tail) is made to decay only to W Z, the W mass
  is redefined to 500 GeV (X) and the Z mass to 100 GeV (Y), and both are forced into light
  quarks (u, d, s);
- detector: final visible particles (neutrinos dropped) with |eta| < 2.5, particles with a proper
  lifetime above 10 mm (K0S, Lambda, ...) left undecayed as they leave the beam pipe, an optional
  Gaussian pT smearing per particle class (tracks, photons, neutral hadrons; a particle smeared
  to pT <= 0 is lost, like one below threshold), at most 700 per event, pT-ordered, massless;
- selection: leading anti-kT R = 1.0 jet pT > 1.2 TeV (fastjet); generation continues until the
  requested numbers of events pass.

The pT-hat floor trades speed against the trigger turn-on: at 1.1 TeV about 70 % of generated
QCD events pass the selection (95 % at 1.2 TeV, 40 % at 1.0 TeV), while at least 18 % of the
events a floor-free sample would select have pT-hat below 1.1 TeV (measured from pT-hat > 0.9
TeV; R = 1.0 jets collect initial-state radiation and the underlying event). Those are missing
here; they sit at the selection threshold, i.e. at the lowest mjj, well below the signal region.

Work is split into one task per (process, worker), each with its own Pythia instance seeded from
(seed, worker, process), so a given (seed, workers) always writes the same file. Signal and
background events are shuffled together, like in the R&D file.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

import awkward as ak
import fastjet
import numpy as np
from tqdm import tqdm

from lhco_diffusion.data import cluster, lhco
from lhco_diffusion.data.kinematics import four_vectors
from lhco_diffusion.errors import InputError

MAX_ABS_ETA = 2.5
JET_RADIUS = 1.0
MIN_LEADING_JET_PT = 1200.0  # GeV
BACKGROUND_PTHAT_MIN = 1100.0  # GeV
RESONANCE_MASS, X_MASS, Y_MASS = 3500.0, 500.0, 100.0  # GeV
BATCH_SIZE = 100  # events per Pythia.nextBatch call
NEUTRINOS = (12, 14, 16)
PHOTON = 22

_COMMON_SETTINGS = (
    "Beams:eCM = 13000",
    "Print:quiet = on",
    "Print:errors = off",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10",
    "Random:setSeed = on",
)


@dataclasses.dataclass(frozen=True)
class Process:
    """One kind of event: its label in the raw file and the Pythia settings that make it."""

    name: str
    label: int
    settings: tuple[str, ...]


BACKGROUND = Process("background", 0, (
    "HardQCD:all = on",
    f"PhaseSpace:pTHatMin = {BACKGROUND_PTHAT_MIN}",
))
SIGNAL = Process("signal", 1, (
    "NewGaugeBoson:ffbar2Wprime = on",
    "Wprime:coup2WZ = 1",
    f"34:m0 = {RESONANCE_MASS}",
    "34:onMode = off",
    "34:onIfAll = 23 24",
    f"24:m0 = {X_MASS}",
    "24:onMode = off",
    "24:onIfMatch = 1 2",
    "24:onIfMatch = 3 2",
    f"23:m0 = {Y_MASS}",
    "23:onMode = off",
    "23:onIfAny = 1 2 3",
))
PROCESSES = (BACKGROUND, SIGNAL)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Relative pT resolution: sigma/pT = stochastic/sqrt(E/GeV) (+) constant (+) linear pT/GeV."""

    stochastic: float
    constant: float
    linear: float = 0.0

    def relative(self, pt: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """sigma(pT)/pT for particles of transverse momentum ``pt`` and energy ``energy`` [GeV]."""
        return np.sqrt(self.stochastic**2 / energy + self.constant**2 + (self.linear * pt) ** 2)


TRACKS = Resolution(stochastic=0.0, constant=0.01, linear=1e-4)
PHOTONS = Resolution(stochastic=0.10, constant=0.01)
NEUTRAL_HADRONS = Resolution(stochastic=0.50, constant=0.05)


def generate(output: str | os.PathLike, n_background: int, n_signal: int, seed: int = 1,
             workers: int = 1, smear: bool = True, progress: bool = True) -> Path:
    """Write ``n_background`` QCD and ``n_signal`` W' events that pass the selection to ``output``.

    The file has the raw R&D layout (pandas HDF, key "df", 700 x (pT [GeV], eta, phi) + label),
    written atomically; events are shuffled. ``workers`` processes generate in parallel (started
    with "spawn": a script calling this needs the ``if __name__ == "__main__":`` guard). The
    sample is assembled in memory: about 17 kB per event at the peak, 1.7 GB for 100k events.
    """
    if n_background < 0 or n_signal < 0 or n_background + n_signal == 0:
        raise InputError(f"event counts must be >= 0 and not both 0, not {n_background} "
                         f"background and {n_signal} signal")
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    if seed < 0:
        raise InputError(f"the seed must be a non-negative integer, not {seed}")
    _import_pythia()
    cluster.print_banner()  # once, before the progress bar starts
    tasks = [
        (process, n_events, seed, worker, smear)
        for process, n_total in ((BACKGROUND, n_background), (SIGNAL, n_signal))
        for worker, n_events in enumerate(_split(n_total, workers))
        if n_events
    ]
    order = np.random.default_rng(seed).permutation(n_background + n_signal)
    with tqdm(total=n_background + n_signal, desc="Pythia events", unit="event",
              disable=not progress) as bar:
        particles = np.concatenate(_run(tasks, workers, bar.update))[order]
    label = np.repeat([task[0].label for task in tasks], [task[1] for task in tasks])[order]
    lhco.write_raw(output, particles, label.astype(np.int8))
    return Path(output)


def generate_process(process: Process, n_events: int, seed: int, worker: int = 0, smear: bool = True,
                     report: Callable[[int], object] | None = None) -> np.ndarray:
    """(n_events, 700, 3) float32 [pT GeV, eta, phi] of selected events of one process.

    Pythia and the smearing draw from streams seeded by (seed, worker, process); ``report`` is
    called with the number of newly selected events after every batch.
    """
    stream = np.random.SeedSequence([seed, worker, process.label])
    pythia = _start_pythia(process, pythia_seed=int(stream.generate_state(1)[0] % 900_000_000) + 1)
    rng = np.random.default_rng(stream)
    charge_type = _charge_lookup(pythia.particleData)
    selected, n_selected, n_tried = [], 0, 0
    while n_selected < n_events:
        efficiency = (n_selected + 1) / (n_tried + 1)
        size = int(np.clip(np.ceil((n_events - n_selected) / efficiency), 1, BATCH_SIZE))
        batch = pythia.nextBatch(size)
        particles = detector_particles(batch.prt, charge_type, rng if smear else None)
        passed = particles[leading_jet_pt(particles) > MIN_LEADING_JET_PT][: n_events - n_selected]
        selected.append(passed)
        n_tried += len(particles)
        n_selected += len(passed)
        if report is not None:
            report(len(passed))
    return np.concatenate(selected)


def detector_particles(event_record: ak.Array, charge_type: Callable[[np.ndarray], np.ndarray],
                       rng: np.random.Generator | None) -> np.ndarray:
    """Visible final particles with |eta| < 2.5 as (B, 700, 3) float32 [pT GeV, eta, phi].

    event_record: a ``Pythia.nextBatch`` particle record (fields id, status, p); ``charge_type``
    maps PDG ids to three times the charge; ``rng`` smears pT (``None``: no smearing).
    """
    final = event_record[event_record.status > 0]
    counts = ak.to_numpy(ak.num(final))
    event = np.repeat(np.arange(len(counts)), counts)
    pdg_id = ak.to_numpy(ak.flatten(final.id))
    px, py, pz, energy = (ak.to_numpy(ak.flatten(getattr(final.p, name)))
                          for name in ("px", "py", "pz", "e"))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):  # pT = 0 gives |eta| = inf: not kept
        eta = np.arcsinh(pz / pt)
    visible = ~np.isin(np.abs(pdg_id), NEUTRINOS) & (np.abs(eta) < MAX_ABS_ETA)
    event, pdg_id, pt, eta, phi, energy = (
        values[visible] for values in (event, pdg_id, pt, eta, np.arctan2(py, px), energy))
    if rng is not None:
        pt = smear_pt(pt, energy, pdg_id, charge_type(pdg_id), rng)
    detected = pt > 0
    values = np.stack([pt, eta, phi], axis=1)[detected].astype(np.float32)
    padded, _ = lhco.pad_by_pt(event[detected], values[:, 0], values, len(counts), lhco.MAX_PARTICLES)
    return padded


def smear_pt(pt: np.ndarray, energy: np.ndarray, pdg_id: np.ndarray, charge_type: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """pT [GeV] times (1 + sigma/pT x a standard normal), sigma from the particle's class.

    Charged particles use TRACKS, photons PHOTONS, everything else NEUTRAL_HADRONS; energy [GeV].
    """
    relative = np.select(
        [charge_type != 0, pdg_id == PHOTON],
        [TRACKS.relative(pt, energy), PHOTONS.relative(pt, energy)],
        NEUTRAL_HADRONS.relative(pt, energy),
    )
    return pt * (1.0 + relative * rng.standard_normal(len(pt)))


def leading_jet_pt(particles: np.ndarray) -> np.ndarray:
    """(N,) pT [GeV] of each event's leading anti-kT R = 1.0 jet (0 for an empty event).

    particles: (N, M, 3) [pT GeV, eta, phi], zero-padded, clustered as massless four-vectors
    exactly as ``cluster.cluster_events`` does.
    """
    real = particles[..., 0] > 0
    momenta = four_vectors(*(np.asarray(column, np.float64) for column in particles[real].T))
    vectors = ak.unflatten(ak.zip(dict(zip(("px", "py", "pz", "E"), momenta.T))), real.sum(axis=1))
    jet_definition = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_RADIUS)
    jets = fastjet.ClusterSequence(vectors, jet_definition).inclusive_jets()
    return ak.to_numpy(ak.fill_none(ak.max(np.hypot(jets.px, jets.py), axis=1), 0.0))


def _start_pythia(process: Process, pythia_seed: int):
    pythia8mc = _import_pythia()
    pythia = pythia8mc.Pythia("", False)
    for setting in (*_COMMON_SETTINGS, f"Random:seed = {pythia_seed}", *process.settings):
        if not pythia.readString(setting):
            raise RuntimeError(f"Pythia rejected the setting '{setting}'")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise the {process.name} process")
    return pythia


def _charge_lookup(particle_data) -> Callable[[np.ndarray], np.ndarray]:
    """A vectorised PDG id -> 3 x charge map (Pythia's lookup, called once per distinct id)."""
    def charge_type(pdg_id: np.ndarray) -> np.ndarray:
        distinct, inverse = np.unique(pdg_id, return_inverse=True)
        return np.array([particle_data.chargeType(int(i)) for i in distinct], np.int32)[inverse]
    return charge_type


def _import_pythia():
    try:
        import pythia8mc
    except ImportError:
        message = "Pythia 8 (pythia8mc) is not installed; install it with pip install -e '.[pythia]'"
        raise InputError(message) from None
    return pythia8mc


def _split(n_events: int, workers: int) -> list[int]:
    return [n_events // workers + (worker < n_events % workers) for worker in range(workers)]


def _run(tasks: list[tuple], workers: int, report: Callable[[int], object]) -> list[np.ndarray]:
    """Results of ``generate_process(*task)`` in task order, in ``workers`` processes."""
    if workers == 1:
        return [generate_process(*task, report=report) for task in tasks]
    context = multiprocessing.get_context("spawn")  # no fork of a parent that may hold TF threads
    progress = context.Queue()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(progress,)) as pool:
        pending = futures = [pool.submit(_generate_in_worker, task) for task in tasks]
        while pending:
            pending = wait(pending, timeout=0.2).not_done
            _drain(progress, report)
        blocks = [future.result() for future in futures]
    _drain(progress, report)
    return blocks


_progress_queue = None


def _start_worker(progress) -> None:
    """Keep the progress queue; use up fastjet's banner silently (the parent printed it)."""
    global _progress_queue
    _progress_queue = progress
    saved_stdout, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        cluster.print_banner()
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
        os.close(devnull)


def _generate_in_worker(task: tuple) -> np.ndarray:
    return generate_process(*task, report=_progress_queue.put)


def _drain(progress, report: Callable[[int], object]) -> None:
    while True:
        try:
            report(progress.get_nowait())
        except queue.Empty:
            return
