"""How close generated events are to reference events: per-feature Wasserstein-1 distances beside
their noise floor, the Fréchet and kernel physics distances (FPD, KPD) of the jet features, and the
two-sample classifier AUC.

    report = compare(generated, reference)              # Events -> JSON-ready dict
    add_two_sample_auc(report, "two-sample-SB", runs, quantiles)
    write(report, directory)                            # fidelity.json and fidelity.md

Wasserstein-1 (W1, scipy) per feature, in the feature's units: the jets' pT, eta, phi, mass and
N (both jets), their |delta phi| and pT balance |pT1 - pT2| / (pT1 + pT2), mjj, and the real
particles' pT_rel, deta and dphi; pT_rel also as log10 pT_rel, where the soft particles (most of
them, and nearly invisible to a linear W1) carry their weight, and as the pT_rel of each jet's
hardest particle, which a pooled distribution of 30 particles a jet barely feels. W1 between two finite samples of one distribution is not 0: its
noise floor is measured as the W1 between two random halves of the reference, scaled to the
sizes being compared by sqrt((1/n_gen + 1/n_ref) / (1/n_half + 1/n_half)) (the large-sample
law of two empirical distribution functions), averaged over ``n_bootstrap`` splits, with their
spread as its error. The W1 of generated against reference gets a bootstrap error (both samples
resampled by event). A faithful generator has W1 / floor near 1.

The pooled particle features dilute a miss in one kind of jet (narrow jets drawn toward the
average jet, say) with the particles of the others. ``compare`` therefore also gives, as a diagnostic
outside the worst ratio, the W1 / floor of the particles' log10 pT_rel and of their distance
dR = sqrt(deta^2 + dphi^2) from the jet axis in each fifth of the reference jets' m/pT
(``SHAPE_BINS``; generated jets are binned at the reference's edges), with the generated share of
each fifth; the floor's size scaling uses the whole samples' sizes, which holds while the
generated shares stay near a fifth. A bin holds a fifth of the particles, so its floor is about
sqrt(5) times the pooled one: the bins locate a miss, and a miss spread over every kind of jet
stands out more in the pooled feature.

FPD and KPD follow JetNet (jetnet.evaluation.fpd/kpd, arXiv:2211.10295) on a per-event vector of
jet features (``jet_feature_matrix``), each feature divided by its largest |value| in the
reference: FPD is the Fréchet distance of Gaussians fitted to batches drawn with replacement,
averaged over ``num_batches`` per batch size at sizes evenly spaced in 1/N, and extrapolated
linearly in 1/N to N = infinity (intercept and its fit error); KPD is the unbiased estimator of
MMD^2 with the polynomial kernel (x.y / d + 1)^4, median over batches, error half the 16-84 %
spread. JetNet's batch sizes (20k-50k for FPD, 5k for KPD, for samples of 50k) are scaled
down in proportion for smaller samples.

numpy/scipy only: no TensorFlow.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import linalg, optimize, stats

from lhco_diffusion.workflow import metrics
from lhco_diffusion.data.kinematics import wrap_phi
from lhco_diffusion.data.processed import Events
from lhco_diffusion.errors import InputError
from lhco_diffusion.files import atomic_output

MAX_EVENTS = 50_000  # events of each file compared (JetNet's recommended sample size)
N_BOOTSTRAP = 10  # bootstrap replicas of W1, random half-splits of the noise floor
FPD_BATCHES = (20_000, 50_000)  # JetNet's smallest and largest FPD batch
KPD_BATCH = 5_000  # JetNet's KPD batch

# name: (label, unit) of every W1 feature, in report order
FEATURES = {
    "jet_pt": ("jet pT", "GeV"),
    "jet_eta": ("jet eta", ""),
    "jet_phi": ("jet phi", ""),
    "jet_mass": ("jet mass", "GeV"),
    "jet_n_constituents": ("jet N", ""),
    "jets_delta_phi": ("jets |delta phi|", ""),
    "jets_pt_balance": ("jets pT balance", ""),
    "mjj": ("mjj", "GeV"),
    "particle_pt_rel": ("particle pT_rel", ""),
    "particle_log_pt_rel": ("particle log10 pT_rel", ""),
    "particle_leading_pt_rel": ("leading particle pT_rel", ""),
    "particle_deta": ("particle deta", ""),
    "particle_dphi": ("particle dphi", ""),
}
SHAPE_BINS = 5  # the particle features by jet shape: in fifths of the reference jets' m/pT
# name: label of every particle feature binned by jet shape (values keyed "<name>/<bin>", bin 0: smallest m/pT)
SHAPE_FEATURES = {"particle_log_pt_rel": "particle log10 pT_rel", "particle_distance": "particle dR from the jet axis"}
# columns of jet_feature_matrix, jets ordered by pT
JET_MATRIX_COLUMNS = ("pt_1", "eta_1", "mass_1", "n_1", "pt_2", "eta_2", "mass_2", "n_2", "delta_phi", "mjj")


def feature_values(events: Events) -> dict[str, np.ndarray]:
    """The W1 features of ``events`` (see ``FEATURES``), flattened: jet features of both jets,
    event features once per event, particle features of real particles only."""
    pt, eta, phi, mass, n_constituents = np.moveaxis(np.asarray(events.jets, np.float64), -1, 0)
    mask = events.mask
    particles = np.asarray(events.particles, np.float64)
    pt_rel = np.where(mask, particles[..., 0], -np.inf)
    return {
        "jet_pt": pt.ravel(), "jet_eta": eta.ravel(), "jet_phi": phi.ravel(), "jet_mass": mass.ravel(),
        "jet_n_constituents": n_constituents.ravel(),
        "jets_delta_phi": np.abs(wrap_phi(phi[:, 0] - phi[:, 1])),
        "jets_pt_balance": np.abs(pt[:, 0] - pt[:, 1]) / (pt[:, 0] + pt[:, 1]),
        "mjj": np.asarray(events.mjj, np.float64),
        "particle_pt_rel": particles[..., 0][mask], "particle_log_pt_rel": np.log10(particles[..., 0][mask]),
        "particle_leading_pt_rel": pt_rel.max(axis=-1)[mask.any(axis=-1)],
        "particle_deta": particles[..., 1][mask],
        "particle_dphi": particles[..., 2][mask],
    }


def shape_edges(reference: Events, bins: int = SHAPE_BINS) -> np.ndarray:
    """(bins - 1,) the inner edges of the bins of jet m/pT: the quantiles of ``reference``'s jets
    at 1/bins, 2/bins, ...; the outer bins are open."""
    return np.quantile(_mass_over_pt(reference), np.arange(1, bins) / bins)


def shape_bins(events: Events, edges: np.ndarray) -> np.ndarray:
    """(N, 2) int: the bin of jet m/pT between ``edges`` (``shape_edges``) of each jet, 0 the narrowest."""
    return np.searchsorted(edges, _mass_over_pt(events), side="right")


def _mass_over_pt(events: Events) -> np.ndarray:
    jets = np.asarray(events.jets, np.float64)
    return jets[..., 3] / jets[..., 0]


def shape_feature_values(events: Events, edges: np.ndarray) -> dict[str, np.ndarray]:
    """``SHAPE_FEATURES`` of the real particles of the jets in each bin of m/pT between ``edges``
    (``shape_edges``), keyed "<feature>/<bin>"."""
    particles = np.asarray(events.particles, np.float64)
    bins = shape_bins(events, edges)
    values = {"particle_log_pt_rel": np.log10(np.where(events.mask, particles[..., 0], 1.0)),
              "particle_distance": np.hypot(particles[..., 1], particles[..., 2])}
    return {f"{name}/{shape}": value[events.mask & (bins == shape)[..., None]]
            for name, value in values.items() for shape in range(len(edges) + 1)}


def wasserstein(generated: Events, reference: Events, values=feature_values) -> dict[str, float]:
    """W1 of every feature of ``values`` (``feature_values``: ``FEATURES``) between two event
    samples, in the feature's units; infinite for a feature one sample has no value of."""
    generated_values, reference_values = values(generated), values(reference)
    return {name: _w1(generated_values[name], reference_values[name]) for name in reference_values}


def _w1(first: np.ndarray, second: np.ndarray) -> float:
    if len(first) == 0 or len(second) == 0:
        return float("inf")
    return float(stats.wasserstein_distance(first, second))


def noise_floor(reference: Events, n_generated: int, n_splits: int = N_BOOTSTRAP,
                seed: int = 0, values=feature_values) -> dict[str, tuple[float, float]]:
    """``{feature: (floor, error)}``: W1 between random halves of ``reference``, scaled to a
    comparison of ``n_generated`` events with all of ``reference`` (see the module docstring);
    mean and standard deviation over ``n_splits`` random splits. ``values`` as in ``wasserstein``."""
    n = len(reference)
    half = n // 2
    if half < 2 or n_generated < 1:
        raise InputError(f"a noise floor needs at least 4 reference events and 1 generated, not {n} and "
                         f"{n_generated}")
    scale = np.sqrt((1.0 / n_generated + 1.0 / n) / (2.0 / half))
    rng = np.random.default_rng([seed, 1])
    splits = []
    for _ in range(n_splits):
        order = rng.permutation(n)
        splits.append(wasserstein(reference.select(order[:half]), reference.select(order[half:2 * half]), values))
    return {name: (scale * float(np.mean([split[name] for split in splits])),
                   scale * float(np.std([split[name] for split in splits])))
            for name in splits[0]}


def bootstrap_wasserstein(generated: Events, reference: Events, n_bootstrap: int = N_BOOTSTRAP,
                          seed: int = 0, values=feature_values) -> dict[str, tuple[float, float]]:
    """``{feature: (W1, error)}``: W1 of the full samples, and the standard deviation of W1 over
    ``n_bootstrap`` replicas with both samples resampled by event. ``values`` as in ``wasserstein``."""
    central = wasserstein(generated, reference, values)
    rng = np.random.default_rng([seed, 2])
    replicas = [wasserstein(generated.select(rng.integers(len(generated), size=len(generated))),
                            reference.select(rng.integers(len(reference), size=len(reference))), values)
                for _ in range(n_bootstrap)]
    return {name: (central[name], float(np.std([replica[name] for replica in replicas])) if replicas else 0.0)
            for name in central}


def jet_feature_matrix(events: Events) -> np.ndarray:
    """(N, 10) float64 per-event jet features for FPD/KPD (``JET_MATRIX_COLUMNS``): pT [GeV],
    eta, mass [GeV], N of the harder then the softer jet, the jets' |delta phi|, and mjj [GeV].
    The absolute phi is left out: events are symmetric about the beam."""
    jets = np.asarray(events.jets, np.float64)
    order = np.argsort(-jets[..., 0], axis=1, kind="stable")
    jets = np.take_along_axis(jets, order[..., None], axis=1)
    per_jet = jets[..., [0, 1, 3, 4]].reshape(len(jets), 8)
    delta_phi = np.abs(wrap_phi(jets[:, 0, 2] - jets[:, 1, 2]))
    return np.column_stack([per_jet, delta_phi, np.asarray(events.mjj, np.float64)])


def normalised(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature matrices (N, d) divided column by column by the largest |value| of ``real``
    (columns that are 0 throughout are left as they are), as JetNet does."""
    largest = np.max(np.abs(real), axis=0)
    largest[largest == 0] = 1.0
    return real / largest, generated / largest


def frechet_distance(mean_1: np.ndarray, covariance_1: np.ndarray, mean_2: np.ndarray,
                     covariance_2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(C1 + C2 - 2 sqrt(C1 C2)), the Fréchet distance of two Gaussians."""
    covariance_1, covariance_2 = np.atleast_2d(covariance_1), np.atleast_2d(covariance_2)
    root = linalg.sqrtm(covariance_1 @ covariance_2)
    if not np.all(np.isfinite(root)):  # a (nearly) singular product: regularise as JetNet does
        offset = 1e-6 * np.eye(len(covariance_1))
        root = linalg.sqrtm((covariance_1 + offset) @ (covariance_2 + offset))
    difference = np.atleast_1d(mean_1 - mean_2)
    trace = np.trace(covariance_1) + np.trace(covariance_2) - 2.0 * np.trace(np.real(root))
    return float(difference @ difference + trace)


def fpd(real: np.ndarray, generated: np.ndarray, batch_range: tuple[int, int] | None = None,
        num_batches: int = 20, num_points: int = 10, normalise: bool = True,
        seed: int = 42) -> tuple[float, float]:
    """Fréchet physics distance of feature matrices (N, d): (value at N = infinity, its error).

    ``batch_range`` (smallest, largest batch) defaults to JetNet's (20k, 50k), scaled down
    to the smaller sample (largest = its size, smallest = 2/5 of it) when that holds fewer.
    """
    real, generated = _matrices(real, generated, normalise)
    if batch_range is None:
        largest = min(FPD_BATCHES[1], len(real), len(generated))
        batch_range = (min(FPD_BATCHES[0], max(2, 2 * largest // 5)), largest)
    sizes = (1.0 / np.linspace(1.0 / batch_range[0], 1.0 / batch_range[1], num_points)).astype(np.int64)
    rng = np.random.default_rng(seed)
    values = []
    for size in sizes:
        distances = []
        for _ in range(num_batches):
            batch_1, batch_2 = real[rng.choice(len(real), size)], generated[rng.choice(len(generated), size)]
            distances.append(frechet_distance(batch_1.mean(axis=0), np.cov(batch_1, rowvar=False),
                                              batch_2.mean(axis=0), np.cov(batch_2, rowvar=False)))
        values.append(np.mean(distances))
    (intercept, _), covariance = optimize.curve_fit(lambda x, a, b: a + b * x, 1.0 / sizes, values,
                                                    bounds=([0.0, 0.0], [np.inf, np.inf]))
    return float(intercept), float(np.sqrt(covariance[0, 0]))


def kpd(real: np.ndarray, generated: np.ndarray, batch_size: int | None = None, num_batches: int = 10,
        normalise: bool = True, seed: int = 42) -> tuple[float, float]:
    """Kernel physics distance of feature matrices (N, d): (median over batches of the unbiased
    MMD^2 with JetNet's kernel (x.y / d + 1)^4, half the 16-84 % spread). ``batch_size``
    defaults to JetNet's 5000, or a tenth of the smaller sample if that holds fewer than 50k
    (JetNet's ratio: batches are drawn with replacement, and repeated events bias the estimate
    upwards by about 1/N)."""
    real, generated = _matrices(real, generated, normalise)
    batch_size = batch_size or max(2, min(KPD_BATCH, min(len(real), len(generated)) // 10))
    values = []
    for index in range(num_batches):
        rng = np.random.default_rng(seed + 1000 * index)
        batch_1, batch_2 = real[rng.choice(len(real), batch_size)], generated[rng.choice(len(generated), batch_size)]
        values.append(_unbiased_mmd(batch_1, batch_2))
    return float(np.median(values)), float(stats.iqr(values, rng=(16.275, 83.725)) / 2.0)


def _unbiased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate of samples x (m, d) and y (n, d) with the polynomial kernel."""
    def kernel(a, b):  # (a.b / d + 1)^4 by squaring twice in place: a float power is ~20x slower
        gram = a @ b.T
        gram /= a.shape[1]
        gram += 1.0
        np.square(gram, out=gram)
        return np.square(gram, out=gram)

    m, n = len(x), len(y)
    within_x, within_y = kernel(x, x), kernel(y, y)
    return float((within_x.sum() - np.trace(within_x)) / (m * (m - 1))
                 + (within_y.sum() - np.trace(within_y)) / (n * (n - 1)) - 2.0 * kernel(x, y).mean())


def _matrices(real, generated, normalise: bool) -> tuple[np.ndarray, np.ndarray]:
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise InputError(f"feature matrices must be (N, d) with the same d, not {real.shape} and {generated.shape}")
    if min(len(real), len(generated)) < 2:
        raise InputError("FPD and KPD need at least 2 events in each sample")
    return normalised(real, generated) if normalise else (real, generated)


def compare(generated: Events, reference: Events, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """The fidelity report of ``generated`` against ``reference`` events (JSON-ready; see the
    module docstring): ``wasserstein`` per feature with noise floor and ratio, the worst ratio,
    ``fpd`` and ``kpd`` (value, error), sample sizes, and ``by_jet_shape`` (``_by_jet_shape``).
    The pooled and the binned features share one set of bootstrap replicas and half-splits."""
    edges = shape_edges(reference)

    def values(events):
        return {**feature_values(events), **shape_feature_values(events, edges)}

    distances = bootstrap_wasserstein(generated, reference, n_bootstrap, seed, values)
    floors = noise_floor(reference, len(generated), n_bootstrap, seed, values)
    rows = {name: {"w1": w1, "w1_error": w1_error, "noise_floor": floors[name][0],
                   "noise_floor_error": floors[name][1], "ratio": _ratio(w1, floors[name][0])}
            for name, (w1, w1_error) in distances.items()}
    table = {name: {"label": label, "unit": unit, **rows[name]} for name, (label, unit) in FEATURES.items()}
    worst = max(table, key=lambda name: table[name]["ratio"])
    real, fake = jet_feature_matrix(reference), jet_feature_matrix(generated)
    fpd_value, fpd_error = fpd(real, fake, seed=seed)
    kpd_value, kpd_error = kpd(real, fake, seed=seed)
    return {
        "n_generated": len(generated), "n_reference": len(reference), "n_bootstrap": n_bootstrap, "seed": seed,
        "wasserstein": table, "worst_ratio": {"feature": worst, "ratio": table[worst]["ratio"]},
        "jet_features": list(JET_MATRIX_COLUMNS),
        "fpd": {"value": fpd_value, "error": fpd_error}, "kpd": {"value": kpd_value, "error": kpd_error},
        "two_sample": {}, "by_jet_shape": _by_jet_shape(rows, edges, generated, reference),
    }


def _by_jet_shape(rows: dict[str, dict], edges: np.ndarray, generated: Events, reference: Events) -> dict:
    """The ``SHAPE_FEATURES`` W1 / floor per bin of jet m/pT, from the rows of ``compare`` keyed
    "<feature>/<bin>": ``{"edges": inner m/pT edges, "generated_share": [fraction of the generated
    jets per bin], "reference_share": [...], "table": {"<feature>/<bin>": {label, bin, w1, ..., ratio}},
    "worst_ratio": {feature, ratio}}``."""
    table = {}
    for name, row in rows.items():
        feature, _, shape = name.partition("/")
        if shape:
            table[name] = {"label": SHAPE_FEATURES[feature], "bin": int(shape), **row}
    worst = max(table, key=lambda name: table[name]["ratio"])

    def shares(events):
        counts = np.bincount(shape_bins(events, edges).ravel(), minlength=len(edges) + 1)
        return (counts / counts.sum()).tolist()

    return {"edges": edges.tolist(), "generated_share": shares(generated), "reference_share": shares(reference),
            "table": table, "worst_ratio": {"feature": worst, "ratio": table[worst]["ratio"]}}


def _ratio(distance: float, floor: float) -> float:
    return distance / floor if floor > 0 else (0.0 if distance == 0 else float("inf"))


def add_two_sample_auc(report: dict, name: str, runs: list[tuple[int, np.ndarray, np.ndarray]],
                       quantiles: tuple[float, float]) -> dict:
    """Add the two-sample classifier AUC of ``runs`` [(seed, scores (N,), labels (N,)), ...] (one
    score file per seed) to ``report["two_sample"][name]``: per seed, median and ``quantiles`` band."""
    runs = sorted(runs, key=lambda run: run[0])
    aucs = [metrics.auc(scores, labels) for _, scores, labels in runs]
    report.setdefault("two_sample", {})[name] = {
        "seeds": [int(seed) for seed, _, _ in runs], "auc_per_seed": aucs,
        "auc": metrics.band(aucs, quantiles).to_dict(), "band_quantiles": list(quantiles),
    }
    return report


def markdown(report: dict) -> str:
    """The report as a Markdown table and summary lines."""
    lines = [f"Generated: {report['n_generated']} events, reference: {report['n_reference']} events; "
             f"errors from {report['n_bootstrap']} bootstrap replicas (W1) and random half-splits (floor).",
             "", "| feature | W1 | noise floor | W1 / floor |", "|---|---:|---:|---:|"]
    for row in report["wasserstein"].values():
        unit = f" [{row['unit']}]" if row["unit"] else ""
        lines.append(f"| {row['label']}{unit} | {row['w1']:.4g} ± {row['w1_error']:.2g} | "
                     f"{row['noise_floor']:.4g} ± {row['noise_floor_error']:.2g} | {row['ratio']:.2f} |")
    worst = report["worst_ratio"]
    lines += ["", f"Worst W1 / noise floor: {worst['ratio']:.2f} ({report['wasserstein'][worst['feature']]['label']}).",
              f"FPD (jet features): {report['fpd']['value']:.3g} ± {report['fpd']['error']:.2g}; "
              f"KPD: {report['kpd']['value']:.3g} ± {report['kpd']['error']:.2g} "
              f"(features: {', '.join(report['jet_features'])})."]
    if "by_jet_shape" in report:
        lines += ["", *_shape_markdown(report["by_jet_shape"])]
    for name, result in report.get("two_sample", {}).items():
        auc = result["auc"]
        low, high = (f"{q:.0%}" for q in result["band_quantiles"])
        lines.append(f"Two-sample classifier AUC ({name}, {len(result['seeds'])} seeds): {auc['median']:.3f} "
                     f"[{low}-{high}: {auc['low']:.3f}, {auc['high']:.3f}].")
    return "\n".join(lines) + "\n"


def _shape_markdown(by_shape: dict) -> list[str]:
    """The ``by_jet_shape`` section of ``markdown``: one row per bin of jet m/pT."""
    edges = [f"{edge:.3g}" for edge in by_shape["edges"]]
    ranges = [f"< {edges[0]}", *(f"{low}-{high}" for low, high in zip(edges, edges[1:])), f">= {edges[-1]}"]
    table = by_shape["table"]
    lines = ["Particles by jet shape (bins of the reference jets' m/pT; a diagnostic, not in the worst ratio above):",
             "", "| jet m/pT | generated / reference jets | "
             + " | ".join(f"{label} W1 / floor" for label in SHAPE_FEATURES.values()) + " |",
             "|---|---:|" + "---:|" * len(SHAPE_FEATURES)]
    for shape, (label, generated, reference) in enumerate(zip(ranges, by_shape["generated_share"],
                                                               by_shape["reference_share"])):
        ratios = " | ".join(f"{table[f'{name}/{shape}']['ratio']:.2f}" for name in SHAPE_FEATURES)
        lines.append(f"| {label} | {generated:.1%} / {reference:.1%} | {ratios} |")
    worst = by_shape["worst_ratio"]
    lines += ["", f"Worst by jet shape: {worst['ratio']:.2f} ({table[worst['feature']]['label']}, "
              f"jet m/pT {ranges[table[worst['feature']]['bin']]})."]
    return lines


def write(report: dict, directory: str | os.PathLike, stem: str = "fidelity") -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``directory`` (atomically); return the paths."""
    directory = Path(directory)
    texts = {f"{stem}.json": json.dumps(report, indent=2, default=_plain) + "\n", f"{stem}.md": markdown(report)}
    for name, text in texts.items():
        with atomic_output(directory / name) as temporary:
            Path(temporary).write_text(text)
    return [directory / name for name in texts]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
