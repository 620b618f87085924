"""A fast, seeded toy of the LHC Olympics R&D events, written in the raw LHCO layout.

Background: QCD-like dijets. The hard scale pT-hat falls like pT^-7 above 1.15 TeV and the
rapidity separation follows the t-channel shape (chi = exp|dy| uniform), so mjj falls steeply
across 2.3-5 TeV: about 78 % of the events pass the 1.2 TeV leading-jet cut and about 20 % of
those fall in the 3.3-3.7 TeV signal region. Each parton becomes a one-prong jet: a hard core
plus softer, wider radiation (about 20-60 particles at 1-2 TeV; gluon jets more than quark jets).

Signal: W' (3.5 TeV) -> X (500 GeV) Y (100 GeV), each -> q q, so both jets have two prongs at
the opening angle their mass sets; the jet masses come out near 500 and 100 GeV (a little
above: the prongs' own radiation and the underlying event add to them).

Every event also gets a soft, uniform "underlying event". Particles have |eta| < 2.5 and
pT > 0.5 GeV, and events are stored pT-ordered and zero-padded to 700 particles, exactly like
the real file, so the fastjet preparation runs on them unchanged.
"""
from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from lhco_diffusion.data.kinematics import four_vectors, pt_eta_phi_mass, wrap_phi
from lhco_diffusion.data.lhco import MAX_PARTICLES, RawWriter, pad_by_pt
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output

BLOCK_EVENTS = 1000  # events drawn from one random stream: output does not depend on chunk_size

# Background hard process
PT_HAT_MIN = 1150.0  # GeV
PT_HAT_POWER = 7.0  # dsigma/dpT ~ pT^-power
CHI_MAX = 5.0  # chi = exp|y1 - y2| uniform in [1, CHI_MAX]
BOOST_WIDTH = 0.5  # dijet rapidity spread

# Signal
RESONANCE_MASS, RESONANCE_WIDTH = 3500.0, 50.0  # GeV
X_MASS, Y_MASS = 500.0, 100.0  # GeV

# Parton shower toy and detector
MULTIPLICITY_AT_1TEV = 35.0  # mean particles from a 1 TeV gluon
CORE_ANGLE = 0.04  # typical angle of a gluon jet's hard core from the jet axis
QUARK_SCALE = 0.6  # quark jets: fewer particles, narrower core
QCD_QUARK_FRACTION = 0.3  # share of quark jets in the QCD background
MAX_ANGLE = 0.9  # largest angle of a shower particle from its parton
UNDERLYING_EVENT_PARTICLES = 30.0  # mean number of soft uniform particles
MIN_PT, MAX_ETA = 0.5, 2.5  # GeV; detector acceptance


def generate_raw(path: str | os.PathLike, n_events: int, signal_fraction: float, seed: int,
                 chunk_size: int = 10_000, progress: bool = False) -> None:
    """Write ``n_events`` toy events in the raw LHCO layout to ``path`` (atomically).

    Each event is signal with probability ``signal_fraction`` (label 1). The events depend only
    on ``(n_events, signal_fraction, seed)``; ``chunk_size`` only sets how many are held in memory.
    """
    if n_events < 1:
        raise InputError(f"the number of synthetic events must be at least 1, not {n_events}")
    if not 0.0 <= signal_fraction <= 1.0:
        raise InputError(f"the signal fraction must lie in [0, 1], not {signal_fraction}")
    blocks_per_chunk = max(1, chunk_size // BLOCK_EVENTS)
    n_blocks = -(-n_events // BLOCK_EVENTS)
    with atomic_output(path) as temporary, RawWriter(temporary) as writer, \
            tqdm(total=n_events, desc="synthetic events", unit="ev", disable=not progress) as bar:
        for first_block in range(0, n_blocks, blocks_per_chunk):
            blocks = [
                generate_events(min(BLOCK_EVENTS, n_events - block * BLOCK_EVENTS), signal_fraction,
                                np.random.default_rng([seed, block]))
                for block in range(first_block, min(first_block + blocks_per_chunk, n_blocks))
            ]
            particles = np.concatenate([block[0] for block in blocks])
            writer.append(particles, np.concatenate([block[1] for block in blocks]))
            bar.update(len(particles))


def generate_events(n_events: int, signal_fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(particles (n, 700, 3) float32 [pT GeV, eta, phi], label (n,) int8)`` toy events."""
    label = (rng.random(n_events) < signal_fraction).astype(np.int8)
    background, signal = np.flatnonzero(label == 0), np.flatnonzero(label == 1)
    partons = [_qcd_partons(len(background), rng), _resonance_partons(len(signal), rng)]
    parton_event = np.concatenate([np.repeat(background, 2), np.repeat(signal, 4)])
    momenta = np.concatenate([p.reshape(-1, 4) for p in partons])
    qcd_quark = rng.random(2 * len(background)) < QCD_QUARK_FRACTION
    quark = np.concatenate([qcd_quark, np.ones(4 * len(signal), bool)])
    shower_event, shower = _shower(parton_event, momenta, quark, rng)
    soft_event, soft = _underlying_event(n_events, rng)
    event = np.concatenate([shower_event, soft_event])
    pt, eta, phi = np.concatenate([shower, soft]).T
    seen = (pt > MIN_PT) & (np.abs(eta) < MAX_ETA)
    values = np.stack([pt, eta, wrap_phi(phi)], axis=1)[seen]
    particles, _ = pad_by_pt(event[seen], pt[seen], values, n_events, MAX_PARTICLES)
    return particles.astype(np.float32), label


def _qcd_partons(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2, 4) back-to-back massless partons [px, py, pz, E] of QCD dijet events."""
    pt = PT_HAT_MIN * rng.random(n) ** (-1.0 / (PT_HAT_POWER - 1.0))
    rapidity_gap = np.log(rng.uniform(1.0, CHI_MAX, n))
    boost_limit = MAX_ETA - 0.5 - rapidity_gap / 2
    boost = np.clip(rng.normal(0.0, BOOST_WIDTH, n), -boost_limit, boost_limit)
    sign = rng.choice([-1.0, 1.0], n)
    phi = rng.uniform(-np.pi, np.pi, n)
    first = four_vectors(pt, boost + sign * rapidity_gap / 2, phi)
    second = four_vectors(pt, boost - sign * rapidity_gap / 2, phi + np.pi + rng.normal(0.0, 0.05, n))
    return np.stack([first, second], axis=1)


def _resonance_partons(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4, 4) quarks [px, py, pz, E] of W' -> X(qq) Y(qq): X's two quarks, then Y's."""
    mass = rng.normal(RESONANCE_MASS, RESONANCE_WIDTH, n)
    rapidity = rng.normal(0.0, BOOST_WIDTH, n)
    resonance = np.stack([np.zeros(n), np.zeros(n), mass * np.sinh(rapidity), mass * np.cosh(rapidity)], 1)
    x, y = _two_body_decay(resonance, X_MASS, Y_MASS, rng)
    return np.stack([*_two_body_decay(x, 0.0, 0.0, rng), *_two_body_decay(y, 0.0, 0.0, rng)], axis=1)


def _shower(parton_event: np.ndarray, momenta: np.ndarray, quark: np.ndarray, rng: np.random.Generator):
    """One-prong showers: ``(event (M,), particles (M, 3) [pT, eta, phi])`` for all partons.

    parton_event: (K,) event of each parton; momenta: (K, 4) [px, py, pz, E]; quark: (K,) bool.

    Momentum fractions follow a steep Gamma(0.4) split, so the leading particles form a hard
    core; each particle sits at an angle ~ CORE_ANGLE / sqrt(z * N) from the parton, so soft
    particles spread wider. The angular scale varies from jet to jet (the jet-mass spread).
    """
    pt, eta, phi, _ = pt_eta_phi_mass(momenta).T
    scale = np.where(quark, QUARK_SCALE, 1.0)
    energy_tev = momenta[:, 3] / 1000.0
    mean = scale * MULTIPLICITY_AT_1TEV * energy_tev**0.3 * np.exp(rng.normal(0.0, 0.25, len(pt)))
    multiplicity = 2 + rng.poisson(mean)
    parton = np.repeat(np.arange(len(pt)), multiplicity)
    share = rng.gamma(0.4, size=len(parton))
    z = share / np.bincount(parton, weights=share)[parton]
    spread = (scale * CORE_ANGLE * np.exp(rng.normal(0.0, 0.4, len(pt))))[parton]
    angle = spread * rng.exponential(size=len(parton)) / np.sqrt(z * multiplicity[parton])
    angle = np.minimum(angle, MAX_ANGLE)
    direction = rng.uniform(-np.pi, np.pi, len(parton))
    particles = np.stack([
        z * pt[parton],
        eta[parton] + angle * np.cos(direction),
        phi[parton] + angle * np.sin(direction),
    ], axis=1)
    return parton_event[parton], particles


def _underlying_event(n_events: int, rng: np.random.Generator):
    """Soft particles uniform in (eta, phi): ``(event (M,), particles (M, 3))``."""
    count = rng.poisson(UNDERLYING_EVENT_PARTICLES, n_events)
    event = np.repeat(np.arange(n_events), count)
    particles = np.stack([
        MIN_PT + rng.exponential(0.5, len(event)),
        rng.uniform(-MAX_ETA, MAX_ETA, len(event)),
        rng.uniform(-np.pi, np.pi, len(event)),
    ], axis=1)
    return event, particles


def _two_body_decay(parent: np.ndarray, mass_1: float, mass_2: float, rng: np.random.Generator):
    """Isotropic decays (in the parent's rest frame) of (n, 4) parents into two (n, 4) daughters."""
    parent_mass = np.sqrt(np.maximum(parent[:, 3] ** 2 - np.sum(parent[:, :3] ** 2, axis=1), 0.0))
    momentum = np.sqrt(np.maximum(
        (parent_mass**2 - (mass_1 + mass_2) ** 2) * (parent_mass**2 - (mass_1 - mass_2) ** 2), 0.0
    )) / (2 * parent_mass)
    cos_theta = rng.uniform(-1.0, 1.0, len(parent))
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    azimuth = rng.uniform(-np.pi, np.pi, len(parent))
    axis = np.stack([sin_theta * np.cos(azimuth), sin_theta * np.sin(azimuth), cos_theta], axis=1)
    velocity = parent[:, :3] / parent[:, 3:]
    daughters = []
    for mass, sign in ((mass_1, 1.0), (mass_2, -1.0)):
        energy = np.sqrt(momentum**2 + mass**2)
        rest = np.concatenate([sign * momentum[:, None] * axis, energy[:, None]], axis=1)
        daughters.append(_boost(rest, velocity))
    return daughters


def _boost(momenta: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Lorentz-boost (n, 4) four-vectors by (n, 3) velocities (units of c)."""
    beta_squared = np.sum(velocity**2, axis=1)
    gamma = 1.0 / np.sqrt(1.0 - beta_squared)
    projection = np.sum(velocity * momenta[:, :3], axis=1)
    scale = np.divide(gamma - 1.0, beta_squared, out=np.zeros_like(gamma), where=beta_squared > 0)
    space = momenta[:, :3] + (scale * projection + gamma * momenta[:, 3])[:, None] * velocity
    return np.concatenate([space, (gamma * (momenta[:, 3] + projection))[:, None]], axis=1)
