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

The sum S also tells a jet stored whole from one cut at P particles. A scalar pT sum is at least
the pT of the vector sum, so a whole jet has S >= 1, above 1 by 3e-5 to a few 1e-2 (median 5e-4),
while a cut jet has S < 1 (Pythia, P = 30: 6 % of the signal region's jets are whole, 31 % of the
tenth with the smallest m/pT). A whole jet's last stored particles are its softest; a cut one's
end at the P-th. Under log S the whole jets are a spike narrower than a hundredth of the
feature's width, which a diffusion model smears: generated light jets put 7 % where the data has
27 % (S - 1 in [1e-4, 1e-3]) and 14 % where it has 0.3 % ([1e-3, 1e-2]), and a particle
network asked for such jets made their soft particles too hard. ``transforms.closure_sum: asinh``
gives the model asinh((S - 1) / 1e-4) instead, which spreads the whole jets over a third of the
feature's width and more.

A jet's particles lie between a few 1e-3 and about 1 from its centre (Pythia, P = 30: distances
from the pT centroid have quantiles 0.005 / 0.03 / 0.4 at 10 / 50 / 90 %, in narrow and wide jets
alike), so with one width for all particles the cores of the narrow jets sit at a fifth of the
network's unit scale. ``transforms.particle_angles: asinh`` moves each particle along its
direction from the centre (the centroid with the closure, else the jet axis) to the distance
asinh(dR / 0.01): linear below 0.01, logarithmic above, the same map for every jet. The map is
smooth at the centre (asinh(r)/r is even in r) and exact to invert; a generated distance beyond pi
is cut to pi.

With ``transforms.jet_eta: gap`` the two jets' pseudorapidities become the event's boost and
their separation, the latter scaled by the largest separation the selection allows:

    eta slots  (eta_1, eta_2)            -> ((eta_1 + eta_2) / 2, (eta_1 - eta_2) / B(mjj))
    B(mjj) = 2 acosh(max(mjj / (2 pT_min), 1)) + 0.2

and each event is first reflected (eta -> -eta for both jets and every particle's deta) if its
leading jet is the more backward one (``mirrored``), so the separation is never negative.
Proton-proton collisions are symmetric under that reflection, as under a rotation about the beam;
seen signed, the separation is two humps near +-B with a dip at 0 that a diffusion model fills in
(the generated |eta_1 - eta_2| came out too small), while one-sided it is a single hump.
``to_physical`` reflects back the events it is told to: the data's own (``mirrored``) for an exact
inverse, a fair coin for generated ones (``random_mirror``).

Two back-to-back jets of equal pT have mjj = 2 pT cosh(delta eta / 2), so a leading jet above
pT_min = ``data.min_leading_jet_pt`` cuts the separation off near 2 acosh(mjj / 2 pT_min). That
edge moves by half a unit of eta across the sidebands, and a generator interpolating into the
signal region smears it; in Pythia dijets |eta_1 - eta_2| / B has the same 10, 50, 90 and 99 %
quantiles within a few per cent at every mjj above 2.65 TeV (0.2 keeps B positive below 2 pT_min,
where the leading jet only passes with an unbalanced partner).

With ``transforms.jet_eta: selection`` the separation is instead divided by the exact bound of its
own event (``selection_gap_bound``): the separation at which that event, its boost, azimuths, pT
ratio and masses over pT kept and scaled to its mjj as ``sampling.exact_mjj`` scales generated
events, has its leading jet exactly at pT_min. The fraction f of the bound lies in (0, 1) exactly
when the scaled leading jet passes the selection, and the model sees logit(f). In data the leading
jet's pT spectrum is a cliff at pT_min, at f = 1; a diffusion model smooths a cliff, and the
generated events beyond it fail the selection and are drawn again, which left the first 2 % above
pT_min at half the data's density (Pythia, P = 30). Under the logit the cliff is an exponential
tail, and every generated event scaled to its mjj passes the selection by construction (without
``exact_mjj`` the generated pT decide, and the guarantee does not hold).

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
from lhco_diffusion.data.kinematics import dijet_mass_squared, wrap_phi
from lhco_diffusion.data.layout import N_INDEX, N_JET_FEATURES
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import read_json, write_json

MIN_MASS_FRACTION = 1.0e-4  # m/mjj floor before the logarithm
MIN_PT_SUM = 1.0e-12  # a jet's pT_rel sum floor (a jet without real particles)
MAX_PT_SUM = 1.0e3  # generated pT_rel sums are cut here (700 particles, each below 1, sum to less)
N_CLOSURE_FEATURES = 3  # the sum feature (log S or asinh((S - 1) / CLOSURE_SUM_SCALE)), c_eta, c_phi
CLOSURE_SUM_SCALE = 1.0e-4  # S - 1 at which transforms.closure_sum: asinh turns from linear to logarithmic
PARTICLE_ANGLE_SCALE = 0.01  # a particle's angular distance from its jet's centre at which
                             # transforms.particle_angles: asinh turns from linear to logarithmic
MAX_PARTICLE_ANGLE = np.pi  # generated angular distances from the centre are cut here (no particle lies farther)
MIN_STD = 1.0e-6  # width floor: a feature that never varies (per jet, the leading jet's phi) stays at 0
ETA_GAP_OFFSET = 0.2  # added to the selection's eta-separation bound, so it stays positive
ETA = 1  # index of eta among the jet features
GAP_FEATURES = {"gap": "scaled", "selection": "selection"}  # transforms.jet_eta -> Stats.eta_gap
GAP_FRACTION_EPSILON = 1.0e-6  # the selection gap's fraction of its bound is clipped to [eps, 1 - eps]
MAX_SELECTION_GAP = 40.0  # the selection bound's bisection interval, [0, 40], far beyond any dijet's
BISECTIONS = 56  # halvings of that interval: 40 / 2^56, float64 rounding


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
    constituent_closure: bool = False  # jets carry (sum feature, c_eta, c_phi); particles are relative to them
    closure_sum: str = "log"  # the sum feature: "log" (log S) or "asinh" (asinh((S - 1) / CLOSURE_SUM_SCALE))
    eta_gap_pt: float = 0.0  # > 0: the eta slots carry the boost and the gap, bounded by this pT_min [GeV]
    eta_gap: str = "scaled"  # the gap feature: "scaled" (over B(mjj)) or "selection" (the logit over its own bound)
    particle_angles: str = "linear"  # (deta, dphi) as they are or "asinh": radially compressed (``angle_features``)

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


def fit(events: Events, transforms_config: TransformsConfig, sideband: tuple[float, float],
        min_leading_jet_pt: float = 0.0) -> Stats:
    """Statistics of ``events`` (sideband training data); ``sideband`` [GeV] sets the mjj scaling,
    ``min_leading_jet_pt`` [GeV] (the selection's, ``data.min_leading_jet_pt``) the eta-gap bound
    of ``jet_eta: gap``, which needs it."""
    if len(events) == 0:
        raise InputError("cannot fit the transforms on an empty event sample")
    if transforms_config.jet_eta in GAP_FEATURES and min_leading_jet_pt <= 0:
        raise InputError(f"transforms.jet_eta: {transforms_config.jet_eta} needs a leading-jet pT threshold above 0 "
                         "(data.min_leading_jet_pt)")
    epsilon, pt_rel_transform = transforms_config.pt_rel_epsilon, transforms_config.pt_rel_transform
    closure = transforms_config.constituent_closure
    eta_gap_pt = float(min_leading_jet_pt) if transforms_config.jet_eta in GAP_FEATURES else 0.0
    eta_gap = GAP_FEATURES.get(transforms_config.jet_eta, "scaled")
    mask = events.mask
    jets, particles = _features(events, closure, eta_gap_pt, eta_gap, transforms_config.closure_sum)
    if transforms_config.jet_statistics == "pooled":
        jets = jets.reshape(-1, jets.shape[-1])
    particles = _particle_features(particles, mask, epsilon, pt_rel_transform,
                                   transforms_config.particle_angles)[mask]
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
        closure_sum=transforms_config.closure_sum,
        eta_gap_pt=eta_gap_pt,
        eta_gap=eta_gap,
        particle_angles=transforms_config.particle_angles,
    )


def to_model(stats: Stats, events: Events) -> ModelInputs:
    """Standardised network inputs of physical ``events``."""
    mask = events.mask
    jets, particles = _features(events, stats.constituent_closure, stats.eta_gap_pt, stats.eta_gap,
                                stats.closure_sum)
    jets = (jets - stats.jet_mean) / stats.jet_std
    particles = _particle_features(particles, mask, stats.pt_rel_epsilon, stats.pt_rel_transform,
                                   stats.particle_angles)
    particles = particles - stats.particle_mean
    particles = particles / stats.particle_std * mask[..., None]
    return ModelInputs(
        particles=particles.astype(np.float32),
        jets=jets.astype(np.float32),
        condition=condition(stats, events.mjj),
        mask=mask.astype(np.float32),
    )


def to_physical(stats: Stats, particles: np.ndarray, jets: np.ndarray, mjj: np.ndarray,
                mask: np.ndarray, event_azimuth: np.ndarray, event_mirror: np.ndarray | None = None) -> Events:
    """The exact inverse of ``to_model``: physical ``Events`` (label 0) from model-space arrays.

    particles (N, 2, P, 3), jets (N, 2, F), mjj (N,) [GeV], mask (N, 2, P), event_azimuth (N,)
    the rotation to undo (``azimuth`` of the original events, or random in [-pi, pi) for new
    ones); event_mirror (N,) bool, the events to reflect in eta (``mirrored`` of the original
    events, needed for an exact inverse under ``jet_eta: gap``, or ``random_mirror`` for new
    ones; None: none). n_constituents is set to the number of real particles in ``mask``
    (rounding the generated N is the sampler's job). With the constituent closure every jet's particles are
    scaled and shifted from their own pT_rel sum and centroid to the S and c of its jet features,
    in one step (the same as closing them to S = 1 and c = 0, then scaling by S and shifting by c).
    """
    mask = np.asarray(mask) > 0
    mjj = np.asarray(mjj, np.float64)
    particle_values = np.asarray(particles, np.float64) * stats.particle_std + stats.particle_mean
    transformed_pt_rel = particle_values[..., 0]
    deta, dphi = np.moveaxis(angles_of_features(particle_values[..., 1:], stats.particle_angles), -1, 0)
    epsilon = stats.pt_rel_epsilon
    if stats.pt_rel_transform == "log":
        pt_rel = np.exp(np.minimum(transformed_pt_rel, 0.0))
    else:
        pt_rel = -np.expm1(transformed_pt_rel)
    pt_rel = np.clip(pt_rel, epsilon, 1.0 - epsilon)
    physical_particles = np.stack([pt_rel, deta, dphi], axis=-1) * mask[..., None]
    jet_values = np.asarray(jets, np.float64) * stats.jet_std + stats.jet_mean
    if stats.constituent_closure:  # from the generated sum and centroid to the jet's
        pt_sum = closure_sum_of_feature(jet_values[..., N_JET_FEATURES], stats.closure_sum)
        centroid = jet_values[..., N_JET_FEATURES + 1:]
        generated_sum, generated_centroid = closure(physical_particles, mask)
        physical_particles = _reopened(physical_particles, pt_sum / generated_sum,
                                       centroid - generated_centroid, mask)
        physical_particles[..., 0] = np.clip(physical_particles[..., 0], epsilon, 1.0 - epsilon) * mask
    log_pt_fraction, eta, phi, log_mass_fraction = np.moveaxis(jet_values[..., :N_INDEX], -1, 0)
    pt, mass = np.exp(log_pt_fraction) * mjj[:, None], np.exp(log_mass_fraction) * mjj[:, None]
    if stats.eta_gap_pt > 0:
        eta = _absolute_eta(eta, np.stack([pt, eta, phi, mass], axis=-1), mjj, stats.eta_gap_pt, stats.eta_gap)
    phi = wrap_phi(phi + np.asarray(event_azimuth, np.float64)[:, None])
    physical_jets = np.stack([pt, eta, phi, mass, mask.sum(axis=-1)], axis=-1)
    if event_mirror is not None:
        physical_jets, physical_particles = _reflected(physical_jets, physical_particles, event_mirror)
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


def mirrored(stats: Stats, jets: np.ndarray) -> np.ndarray:
    """(N,) bool: the events of ``jets`` (N, 2, 5) the model sees reflected in eta. Under
    ``jet_eta: gap`` those whose leading jet has the smaller eta; none otherwise."""
    if stats.eta_gap_pt <= 0:
        return np.zeros(len(jets), bool)
    return _leading_jet_backward(jets)


def _leading_jet_backward(jets: np.ndarray) -> np.ndarray:
    """(N,) bool: the first of the jets (N, 2, 5) has the smaller eta."""
    jets = np.asarray(jets)
    return jets[:, 0, ETA] < jets[:, 1, ETA]


def random_mirror(stats: Stats, rng: np.random.Generator, n: int) -> np.ndarray | None:
    """The reflections of ``n`` new events: a fair coin each under ``jet_eta: gap`` (collisions
    are symmetric under eta -> -eta); None otherwise, and no draw from ``rng``."""
    return rng.random(n) < 0.5 if stats.eta_gap_pt > 0 else None


def _reflected(jets: np.ndarray, particles: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``jets`` (N, 2, 5) and ``particles`` (N, 2, P, 3) with the jets' eta and the
    particles' deta negated in the events where ``mirror`` (N,) is true."""
    sign = np.where(np.asarray(mirror, bool), -1.0, 1.0)
    jets, particles = np.array(jets, np.float64), np.array(particles, np.float64)
    jets[..., ETA] *= sign[:, None]
    particles[..., 1] *= sign[:, None, None]
    return jets, particles


def eta_gap_bound(mjj: np.ndarray, min_leading_jet_pt: float) -> np.ndarray:
    """B(mjj) (N,): the eta separation of two back-to-back jets of pT ``min_leading_jet_pt`` [GeV]
    at dijet mass ``mjj`` [GeV] (0 below twice that pT), plus ``ETA_GAP_OFFSET``."""
    ratio = np.maximum(np.asarray(mjj, np.float64) / (2.0 * min_leading_jet_pt), 1.0)
    return 2.0 * np.arccosh(ratio) + ETA_GAP_OFFSET


def selection_gap_bound(jets: np.ndarray, boost: np.ndarray, mjj: np.ndarray, min_leading_jet_pt: float) -> np.ndarray:
    """(N,) the eta separation eta_1 - eta_2 at which the jets (N, 2, >=4) [pT, eta, phi, mass]
    with mean eta ``boost`` (N,), scaled to dijet mass ``mjj`` (N,) [GeV] as ``sampling.exact_mjj``
    scales them, have a first jet of pT ``min_leading_jet_pt`` [GeV]. Their azimuths, pT ratio and
    masses over pT are kept; their eta column is not read. At fixed pT the dijet mass grows with the
    separation, so the scaled first jet is above the threshold exactly when the separation is below
    the bound; 0 where it is below at every separation."""
    jets = np.asarray(jets, np.float64)
    pt = jets[..., 0] / jets[:, :1, 0]  # the first jet's pT is the unit
    phi, mass = jets[..., 2], jets[..., 3] / jets[:, :1, 0]
    target = (np.asarray(mjj, np.float64) / min_leading_jet_pt) ** 2  # mjj^2 at a first-jet pT of 1

    def below_target(separation):
        eta = boost[:, None] + 0.5 * separation[:, None] * np.array([1.0, -1.0])
        return dijet_mass_squared(pt, eta, phi, mass) < target

    low, high = np.zeros(len(jets)), np.full(len(jets), MAX_SELECTION_GAP)
    for _ in range(BISECTIONS):
        middle = 0.5 * (low + high)
        below = below_target(middle)
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return np.where(below_target(np.zeros(len(jets))), 0.5 * (low + high), 0.0)


def _boost_and_gap(jets: np.ndarray, mjj: np.ndarray, min_leading_jet_pt: float, eta_gap: str) -> np.ndarray:
    """(N, 2): (mean eta, gap) of the physical ``jets`` (N, 2, >=4), reflected so that
    eta_1 >= eta_2; the gap is (eta_1 - eta_2) / B(mjj) ("scaled") or the logit of
    (eta_1 - eta_2) / ``selection_gap_bound`` ("selection")."""
    eta = jets[..., ETA]
    separation = eta[:, 0] - eta[:, 1]
    if eta_gap == "selection":
        bound = selection_gap_bound(jets, eta.mean(axis=-1), mjj, min_leading_jet_pt)  # 0: no selection passes
        fraction = np.divide(separation, bound, out=np.ones_like(separation), where=bound > 0)
        fraction = np.clip(fraction, GAP_FRACTION_EPSILON, 1.0 - GAP_FRACTION_EPSILON)
        gap = np.log(fraction) - np.log1p(-fraction)
    else:
        gap = separation / eta_gap_bound(mjj, min_leading_jet_pt)
    return np.stack([eta.mean(axis=-1), gap], axis=-1)


def _absolute_eta(boost_and_gap: np.ndarray, jets: np.ndarray, mjj: np.ndarray, min_leading_jet_pt: float,
                  eta_gap: str) -> np.ndarray:
    """(N, 2) the jets' eta; the inverse of ``_boost_and_gap``, which the "selection" gap
    needs the jets' (N, 2, 4) pT, phi and mass for (their eta columns are not read)."""
    boost, gap = boost_and_gap[:, 0], boost_and_gap[:, 1]
    if eta_gap == "selection":
        separation = selection_gap_bound(jets, boost, mjj, min_leading_jet_pt) / (1.0 + np.exp(-gap))
    else:
        separation = gap * eta_gap_bound(mjj, min_leading_jet_pt)
    return np.stack([boost + 0.5 * separation, boost - 0.5 * separation], axis=-1)


def closure(particles: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S (N, 2), centroid (N, 2, 2)): each jet's pT_rel sum over its real particles and their
    pT-weighted mean (deta, dphi); ``particles`` (N, 2, P, 3) physical, ``mask`` (N, 2, P)."""
    particles = np.asarray(particles, np.float64)
    pt_rel = particles[..., 0] * mask
    pt_sum = np.maximum(pt_rel.sum(axis=-1), MIN_PT_SUM)
    centroid = np.einsum("...p,...pk->...k", pt_rel, particles[..., 1:]) / pt_sum[..., None]
    return pt_sum, centroid


def closure_sum_feature(pt_sum: np.ndarray, kind: str) -> np.ndarray:
    """The jet feature of the pT_rel sums S (any shape): log S ("log") or
    asinh((S - 1) / CLOSURE_SUM_SCALE) ("asinh")."""
    pt_sum = np.asarray(pt_sum, np.float64)
    return np.arcsinh((pt_sum - 1.0) / CLOSURE_SUM_SCALE) if kind == "asinh" else np.log(pt_sum)


def closure_sum_of_feature(feature: np.ndarray, kind: str) -> np.ndarray:
    """The pT_rel sums S of ``closure_sum_feature`` values, in [MIN_PT_SUM, MAX_PT_SUM]; its inverse.
    A generated outlier feature comes back as MAX_PT_SUM, not as an overflow to infinity (whose
    product with the padded slots' zeros would be NaN)."""
    feature = np.minimum(np.asarray(feature, np.float64), closure_sum_feature(MAX_PT_SUM, kind))
    pt_sum = 1.0 + CLOSURE_SUM_SCALE * np.sinh(feature) if kind == "asinh" else np.exp(feature)
    return np.maximum(pt_sum, MIN_PT_SUM)


def _reopened(particles: np.ndarray, scale: np.ndarray, shift: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``particles`` with each jet's pT_rel times ``scale`` (N, 2) and (deta, dphi) plus ``shift`` (N, 2, 2)."""
    particles = np.asarray(particles, np.float64)
    scaled = np.concatenate([particles[..., :1] * scale[..., None, None],
                             particles[..., 1:] + shift[..., None, :]], axis=-1)
    return scaled * mask[..., None]


def _features(events: Events, constituent_closure: bool, eta_gap_pt: float = 0.0,
              eta_gap: str = "scaled", closure_sum: str = "log") -> tuple[np.ndarray, np.ndarray]:
    """(jets (N, 2, F) float64 before standardisation, physical particles (N, 2, P, 3) to transform):
    with the closure, the jets gain (the ``closure_sum`` feature of S, c_eta, c_phi) and every
    jet's particles are closed: pT_rel divided by S and (deta, dphi) moved by -c, so that S = 1 and
    c = 0 exactly; with ``eta_gap_pt`` > 0 the events are reflected to a non-negative gap first
    (``mirrored``) and the eta slots carry the boost and the ``eta_gap`` feature (``_boost_and_gap``)."""
    physical_jets, particles = events.jets, events.particles
    if eta_gap_pt > 0:
        physical_jets, particles = _reflected(physical_jets, particles, _leading_jet_backward(physical_jets))
    jets = _jet_features(physical_jets, events.mjj)
    if eta_gap_pt > 0:
        jets[..., ETA] = _boost_and_gap(physical_jets, np.asarray(events.mjj, np.float64), eta_gap_pt, eta_gap)
    if not constituent_closure:
        return jets, particles
    mask = events.mask
    pt_sum, centroid = closure(particles, mask)
    jets = np.concatenate([jets, closure_sum_feature(pt_sum, closure_sum)[..., None], centroid], axis=-1)
    return jets, _reopened(particles, 1.0 / pt_sum, -centroid, mask)


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
                       pt_rel_transform: str = "log_one_minus", particle_angles: str = "linear") -> np.ndarray:
    """(N, 2, P, 3) float64 (log(1 - pT_rel) or log(pT_rel), ``angle_features`` of (deta, dphi));
    padded slots 0."""
    particles = np.asarray(particles, np.float64)
    pt_rel = np.clip(particles[..., 0], epsilon, 1.0 - epsilon)
    transformed = np.log(pt_rel) if pt_rel_transform == "log" else np.log1p(-pt_rel)
    features = np.concatenate([transformed[..., None], angle_features(particles[..., 1:], particle_angles)], axis=-1)
    return features * mask[..., None]


def angle_features(angles: np.ndarray, kind: str) -> np.ndarray:
    """The model's particle angles of physical (deta, dphi) ``angles`` (..., 2): the same ("linear")
    or, for "asinh", moved along their direction from the origin (the jet's centre) to the
    distance asinh(dR / PARTICLE_ANGLE_SCALE), dR = sqrt(deta^2 + dphi^2)."""
    if kind != "asinh":
        return np.asarray(angles, np.float64)
    return _radially_mapped(angles, lambda distance: np.arcsinh(distance / PARTICLE_ANGLE_SCALE))


def angles_of_features(features: np.ndarray, kind: str) -> np.ndarray:
    """The physical (deta, dphi) (..., 2) of ``angle_features`` values, its inverse; under "asinh"
    a distance beyond MAX_PARTICLE_ANGLE (a generated outlier) is cut to it, its direction kept."""
    if kind != "asinh":
        return np.asarray(features, np.float64)
    largest = np.arcsinh(MAX_PARTICLE_ANGLE / PARTICLE_ANGLE_SCALE)
    return _radially_mapped(features, lambda distance: PARTICLE_ANGLE_SCALE * np.sinh(np.minimum(distance, largest)))


def _radially_mapped(vectors: np.ndarray, distance_map) -> np.ndarray:
    """``vectors`` (..., 2) float64, each moved along its direction to ``distance_map`` of its length
    (a map with ``distance_map``(0) = 0: the zero vector stays)."""
    vectors = np.asarray(vectors, np.float64)
    distance = np.hypot(vectors[..., 0], vectors[..., 1])
    ratio = np.divide(distance_map(distance), distance, out=np.zeros_like(distance), where=distance > 0)
    return vectors * ratio[..., None]
