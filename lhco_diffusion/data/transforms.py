"""Model-space transforms: physical events <-> standardised network inputs, exactly invertible.

    jets       (pT, eta, phi, m, N)      -> (log(pT/mjj), eta, phi - azimuth, log(m/mjj), N), standardised
    particles  (pT_rel, deta, dphi)      -> (log(1 - pT_rel), deta, dphi), standardised over real
                                            particles only; padded slots stay exactly 0
                                            (``transforms.pt_rel_transform: log``: log(pT_rel))
    condition  mjj                       -> log mjj mapped linearly from the sideband edges to [-1, 1]

With ``transforms.constituent_closure`` (the generators only) each jet's model features gain
three more, the closure of its stored particles, and the particles are described relative to it:

    jets       ... + (log S, c_eta, c_phi)     S = sum of pT_rel, c = sum of pT_rel * (deta, dphi) / S
    particles  (pT_rel / S, deta - c_eta, dphi - c_phi) before the transform above

In data the stored particles close tightly on their jet: S is at most about 1.02 (above 1 only
when all constituents are stored) and the centroid sits within a few 1e-3 of the jet axis, with
a shift that follows the jet's eta and mass (the pT-weighted pseudorapidity of a massive jet's
constituents is not the pseudorapidity of their sum). A particle network generating each of 30
particles at a time barely reproduces such collective sums; the jet network models the three
numbers with the rest of the jet, and ``to_physical`` projects every generated cloud onto sum 1
and centroid 0 before scaling and shifting it back, so the constraints hold exactly. On data the
projection does nothing, and the round trip stays exact.

The jets are standardised with one set of statistics for both (``transforms.jet_statistics:
pooled``) or with one per jet (``per_jet``: the leading jet and its partner each get their own
means and widths). After the event rotation below the pooled width of the jet phi is about pi/2,
set by the two jets sitting at -pi/2 and +pi/2, while the partner's deviation from back to back
has a width of 0.14 rad (Pythia dijets); per jet, that deviation is what the network sees at unit
scale, and the leading jet's phi, which never varies, is reproduced exactly.

Collisions are symmetric under a rotation of the whole event about the beam, so the absolute
azimuth carries no information, while the two jets' relative azimuth (back to back: delta phi
near pi) is a sharp correlation. Each event is therefore rotated by its ``azimuth`` (the first
jet's phi + pi/2): the first jet sits at phi = -pi/2 and a back-to-back partner at +pi/2, away
from the +-pi seam, where a diffusion model would have to learn a jump. ``to_physical`` rotates
back by a given azimuth: the events' own (``azimuth(events.jets)``) for an exact inverse, or a
uniform random one for generated events. The constituents' coordinates are relative to their
jet and unaffected. (The paper models the absolute jet phi; this is a deliberate departure.)

The statistics are fitted once on sideband training data (``fit``), saved as JSON beside the
checkpoint (``Stats.save``), and used unchanged for sampling (``to_physical``).
pT_rel is clipped to [epsilon, 1 - epsilon] and m/mjj to at least MIN_MASS_FRACTION before the
logarithms (single-particle jets have pT_rel = 1 and m = 0); the inverse is exact elsewhere.

The paper's log(1 - pT_rel) maps every soft particle (pT_rel << 1) to nearly 0, so the model
barely resolves them; log(pT_rel) spreads them over decades instead. The choice is stored in
the statistics, so a checkpoint always inverts its own transform.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from lhco_diffusion.config import TransformsConfig
from lhco_diffusion.data.kinematics import wrap_phi
from lhco_diffusion.data.layout import N_INDEX, N_JET_FEATURES
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import read_json, write_json

MIN_MASS_FRACTION = 1.0e-4  # m/mjj floor before the logarithm
MIN_PT_SUM = 1.0e-12  # a jet's pT_rel sum floor (a jet without real particles)
N_CLOSURE_FEATURES = 3  # log S, c_eta, c_phi
MIN_STD = 1.0e-6  # width floor: a feature that never varies (per jet, the leading jet's phi) stays at 0


@dataclasses.dataclass
class Stats:
    """Fitted standardisation: means and widths of the transformed features, and the mjj range."""

    jet_mean: np.ndarray  # (F,) pooled over both jets, or (2, F) per jet; F = 5, or 8 with the closure
    jet_std: np.ndarray  # (F,) or (2, F)
    particle_mean: np.ndarray  # (3,)
    particle_std: np.ndarray  # (3,)
    log_mjj_min: float  # log(mjj / GeV) mapped to -1
    log_mjj_max: float  # log(mjj / GeV) mapped to +1
    pt_rel_epsilon: float
    pt_rel_transform: str = "log_one_minus"  # log(1 - pT_rel) (the paper) or "log": log(pT_rel)
    constituent_closure: bool = False  # jets carry (log S, c_eta, c_phi); particles are relative to them

    @property
    def n_jet_features(self) -> int:
        """Model-space features per jet: 5, or 8 with the constituent closure."""
        return self.jet_mean.shape[-1]

    def __post_init__(self):
        for name in ("jet_mean", "jet_std", "particle_mean", "particle_std"):
            setattr(self, name, np.asarray(getattr(self, name), np.float64))

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics as JSON (atomically)."""
        write_json(path, {key: np.asarray(value).tolist() for key, value in dataclasses.asdict(self).items()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Stats":
        """Read statistics written by ``save``."""
        if not os.path.isfile(path):
            raise InputError(f"transform statistics {path} do not exist; train the model first")
        values = read_json(path, "transform statistics")
        try:
            return cls(**values)
        except TypeError:
            raise InputError(f"{path} is not a transform-statistics JSON file") from None


@dataclasses.dataclass
class ModelInputs:
    """Network inputs, float32: particles (N, 2, P, 3), jets (N, 2, F), condition (N, 1), mask (N, 2, P);
    F = ``model_jet_features``."""

    particles: np.ndarray
    jets: np.ndarray
    condition: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.condition)

    def select(self, index) -> "ModelInputs":
        """The events at ``index`` (a slice, integer array or boolean mask)."""
        return ModelInputs(self.particles[index], self.jets[index], self.condition[index], self.mask[index])


def model_jet_features(transforms_config: TransformsConfig) -> int:
    """Model-space features per jet under ``transforms_config``: 5, or 8 with the constituent closure."""
    return N_JET_FEATURES + (N_CLOSURE_FEATURES if transforms_config.constituent_closure else 0)


def fit(events: Events, transforms_config: TransformsConfig, sideband: tuple[float, float]) -> Stats:
    """Statistics of ``events`` (sideband training data); ``sideband`` [GeV] sets the mjj scaling."""
    if len(events) == 0:
        raise InputError("cannot fit the transforms on an empty event sample")
    epsilon, pt_rel_transform = transforms_config.pt_rel_epsilon, transforms_config.pt_rel_transform
    closure = transforms_config.constituent_closure
    mask = events.mask
    jets, particles = _features(events, closure)
    if transforms_config.jet_statistics == "pooled":
        jets = jets.reshape(-1, jets.shape[-1])
    particles = _particle_features(particles, mask, epsilon, pt_rel_transform)[mask]
    if len(particles) == 0:
        raise InputError("cannot fit the transforms: the events have no particles")
    return Stats(
        jet_mean=jets.mean(axis=0),
        jet_std=np.maximum(jets.std(axis=0), MIN_STD),
        particle_mean=particles.mean(axis=0),
        particle_std=np.maximum(particles.std(axis=0), MIN_STD),
        log_mjj_min=float(np.log(sideband[0])),
        log_mjj_max=float(np.log(sideband[1])),
        pt_rel_epsilon=epsilon,
        pt_rel_transform=pt_rel_transform,
        constituent_closure=closure,
    )


def to_model(stats: Stats, events: Events) -> ModelInputs:
    """Standardised network inputs of physical ``events``."""
    mask = events.mask
    jets, particles = _features(events, stats.constituent_closure)
    jets = (jets - stats.jet_mean) / stats.jet_std
    particles = _particle_features(particles, mask, stats.pt_rel_epsilon, stats.pt_rel_transform)
    particles = particles - stats.particle_mean
    particles = particles / stats.particle_std * mask[..., None]
    return ModelInputs(
        particles=particles.astype(np.float32),
        jets=jets.astype(np.float32),
        condition=condition(stats, events.mjj),
        mask=mask.astype(np.float32),
    )


def to_physical(stats: Stats, particles: np.ndarray, jets: np.ndarray, mjj: np.ndarray,
                mask: np.ndarray, event_azimuth: np.ndarray) -> Events:
    """The exact inverse of ``to_model``: physical ``Events`` (label 0) from model-space arrays.

    particles (N, 2, P, 3), jets (N, 2, F), mjj (N,) [GeV], mask (N, 2, P), event_azimuth (N,)
    the rotation to undo (``azimuth`` of the original events, or random in [-pi, pi) for new
    ones). n_constituents is set to the number of real particles in ``mask`` (rounding the
    generated N is the sampler's job). With the constituent closure every jet's particles are
    scaled and shifted from their own pT_rel sum and centroid to the S and c of its jet features,
    in one step (the same as ``closed``, then scaling by S and shifting by c).
    """
    mask = np.asarray(mask) > 0
    mjj = np.asarray(mjj, np.float64)
    transformed_pt_rel, deta, dphi = np.moveaxis(
        np.asarray(particles, np.float64) * stats.particle_std + stats.particle_mean, -1, 0
    )
    epsilon = stats.pt_rel_epsilon
    if stats.pt_rel_transform == "log":
        pt_rel = np.exp(np.minimum(transformed_pt_rel, 0.0))
    else:
        pt_rel = -np.expm1(transformed_pt_rel)
    pt_rel = np.clip(pt_rel, epsilon, 1.0 - epsilon)
    physical_particles = np.stack([pt_rel, deta, dphi], axis=-1) * mask[..., None]
    jet_values = np.asarray(jets, np.float64) * stats.jet_std + stats.jet_mean
    if stats.constituent_closure:  # from the generated sum and centroid to the jet's
        log_sum, centroid = jet_values[..., N_JET_FEATURES], jet_values[..., N_JET_FEATURES + 1:]
        generated_sum, generated_centroid = closure(physical_particles, mask)
        physical_particles = _reopened(physical_particles, np.exp(log_sum) / generated_sum,
                                       centroid - generated_centroid, mask)
        physical_particles[..., 0] = np.clip(physical_particles[..., 0], epsilon, 1.0 - epsilon) * mask
    log_pt_fraction, eta, phi, log_mass_fraction = np.moveaxis(jet_values[..., :N_INDEX], -1, 0)
    pt, mass = np.exp(log_pt_fraction) * mjj[:, None], np.exp(log_mass_fraction) * mjj[:, None]
    phi = wrap_phi(phi + np.asarray(event_azimuth, np.float64)[:, None])
    physical_jets = np.stack([pt, eta, phi, mass, mask.sum(axis=-1)], axis=-1)
    return Events(physical_particles, physical_jets, mjj, np.zeros(len(mjj), np.int8))


def condition(stats: Stats, mjj: np.ndarray) -> np.ndarray:
    """(N, 1) float32: log mjj [GeV] scaled so the sideband edges map to -1 and +1."""
    log_mjj = np.log(np.asarray(mjj, np.float64))
    scaled = 2.0 * (log_mjj - stats.log_mjj_min) / (stats.log_mjj_max - stats.log_mjj_min) - 1.0
    return scaled.reshape(-1, 1).astype(np.float32)


def mjj_from_condition(stats: Stats, condition: np.ndarray) -> np.ndarray:
    """(N,) mjj [GeV] from (N, 1) or (N,) conditions; the inverse of ``condition``."""
    scaled = np.asarray(condition, np.float64).reshape(-1)
    return np.exp((scaled + 1.0) / 2.0 * (stats.log_mjj_max - stats.log_mjj_min) + stats.log_mjj_min)


def azimuth(jets: np.ndarray) -> np.ndarray:
    """(N,) the rotation that puts the first of the jets (N, 2, 5) at phi = -pi/2: its phi + pi/2."""
    return wrap_phi(np.asarray(jets, np.float64)[:, 0, 2] + 0.5 * np.pi)


def closure(particles: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S (N, 2), centroid (N, 2, 2)): each jet's pT_rel sum over its real particles and their
    pT-weighted mean (deta, dphi); ``particles`` (N, 2, P, 3) physical, ``mask`` (N, 2, P)."""
    particles = np.asarray(particles, np.float64)
    pt_rel = particles[..., 0] * mask
    pt_sum = np.maximum(pt_rel.sum(axis=-1), MIN_PT_SUM)
    centroid = np.einsum("...p,...pk->...k", pt_rel, particles[..., 1:]) / pt_sum[..., None]
    return pt_sum, centroid


def closed(particles: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``particles`` (N, 2, P, 3) with every jet's pT_rel divided by their sum and (deta, dphi)
    moved by minus their pT-weighted centroid: S = 1 and c = 0 exactly; padded slots stay 0."""
    pt_sum, centroid = closure(particles, mask)
    return _reopened(particles, 1.0 / pt_sum, -centroid, mask)


def _reopened(particles: np.ndarray, scale: np.ndarray, shift: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``particles`` with each jet's pT_rel times ``scale`` (N, 2) and (deta, dphi) plus ``shift`` (N, 2, 2)."""
    particles = np.asarray(particles, np.float64)
    scaled = np.concatenate([particles[..., :1] * scale[..., None, None],
                             particles[..., 1:] + shift[..., None, :]], axis=-1)
    return scaled * mask[..., None]


def _features(events: Events, constituent_closure: bool) -> tuple[np.ndarray, np.ndarray]:
    """(jets (N, 2, F) float64 before standardisation, physical particles (N, 2, P, 3) to transform):
    with the closure, the jets gain (log S, c_eta, c_phi) and the particles are ``closed``."""
    jets = _jet_features(events.jets, events.mjj)
    if not constituent_closure:
        return jets, events.particles
    mask = events.mask
    pt_sum, centroid = closure(events.particles, mask)
    jets = np.concatenate([jets, np.log(pt_sum)[..., None], centroid], axis=-1)
    return jets, closed(events.particles, mask)


def _jet_features(jets: np.ndarray, mjj: np.ndarray) -> np.ndarray:
    """(N, 2, 5) float64 (log(pT/mjj), eta, phi - azimuth, log(m/mjj), N)."""
    jets = np.asarray(jets, np.float64)
    mjj = np.asarray(mjj, np.float64)[:, None]
    mass_fraction = np.maximum(jets[..., 3] / mjj, MIN_MASS_FRACTION)
    pt_fraction = jets[..., 0] / mjj
    eta, n_constituents = jets[..., 1], jets[..., N_INDEX]
    phi = wrap_phi(jets[..., 2] - azimuth(jets)[:, None])
    return np.stack([np.log(pt_fraction), eta, phi, np.log(mass_fraction), n_constituents], axis=-1)


def _particle_features(particles: np.ndarray, mask: np.ndarray, epsilon: float,
                       pt_rel_transform: str = "log_one_minus") -> np.ndarray:
    """(N, 2, P, 3) float64 (log(1 - pT_rel) or log(pT_rel), deta, dphi); padded slots 0."""
    particles = np.asarray(particles, np.float64)
    pt_rel = np.clip(particles[..., 0], epsilon, 1.0 - epsilon)
    transformed = np.log(pt_rel) if pt_rel_transform == "log" else np.log1p(-pt_rel)
    features = np.stack([transformed, particles[..., 1], particles[..., 2]], axis=-1)
    return features * mask[..., None]
