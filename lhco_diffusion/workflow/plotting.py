"""Figures of the evaluation: SIC and ROC bands, max SIC and AUC versus injected signal, and
generated-versus-reference feature histograms with ratio panels (mplhep CMS-like style).
As in the paper, curves of the diffusion generator are red and those of flow matching blue.

Every figure is written once per format (``evaluation.formats``: png, pdf), each file atomically.
Feature histograms are filled chunk by chunk, so files of any size fit in memory; the binning
comes from the reference sample's 0.1-99.9 % quantiles (values outside are not drawn).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import matplotlib
import mplhep
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import wasserstein_distance
from tqdm import tqdm

from lhco_diffusion.data import processed
from lhco_diffusion.data.processed import Events
from lhco_diffusion.files import atomic_output
from lhco_diffusion.workflow import fidelity
from lhco_diffusion.workflow.metrics import Injection, SeedCurves

EXPERIMENT_LABEL = ("LHCO R&D", "Simulation")
FONT_SIZE = 20
N_BINS = 40
READ_CHUNK = 20_000  # events per chunk when filling histograms
GENERATOR_COLORS = {"diffusion": "tab:red", "flow_matching": "tab:blue"}  # paper Figs. 4 to 7

# name: (axis label, logarithmic x (bins), logarithmic y)
FEATURES = {
    "jet_pt": (r"Jet $p_{T}$ [GeV]", False, True),
    "jet_eta": (r"Jet $\eta$", False, False),
    "jet_phi": (r"Jet $\phi$", False, False),
    "jet_mass": (r"Jet mass [GeV]", False, False),
    "jet_n_constituents": (r"Jet constituents $N$", False, False),
    "jets_delta_phi": (r"Jets $|\Delta\phi|$", False, True),
    "jets_pt_balance": (r"Jets $|p_{T,1} - p_{T,2}| / (p_{T,1} + p_{T,2})$", False, True),
    "particle_pt_rel": (r"Particle $p_{T}^{rel}$", True, True),
    "particle_deta": (r"Particle $\Delta\eta$", False, True),
    "particle_dphi": (r"Particle $\Delta\phi$", False, True),
    "mjj": (r"$m_{jj}$ [GeV]", False, True),
}


@contextlib.contextmanager
def style():
    """mplhep's CMS-like style (bundled fonts, nothing fetched) with a smaller font; figures are
    drawn and saved inside it (mathtext and tick labels are laid out when saving)."""
    with matplotlib.style.context([mplhep.style.CMS, {"font.size": FONT_SIZE}]):
        yield


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure drawn by the Agg canvas (no pyplot, no GUI backend, no global figure list)."""
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, directory: str | os.PathLike, name: str,
         formats: tuple[str, ...]) -> list[Path]:
    """Write ``figure`` as ``directory/name.<format>`` for each format; return the paths."""
    paths = []
    for fmt in formats:
        path = Path(directory) / f"{name}.{fmt}"
        with style(), atomic_output(path) as temporary:
            figure.savefig(temporary, format=fmt, bbox_inches="tight")
        paths.append(path)
    return paths


def _label(ax: Axes, text: str = "") -> None:
    experiment, status = EXPERIMENT_LABEL
    mplhep.label.exp_label(exp=experiment, llabel=status, rlabel=text, ax=ax,
                           fontsize=ax.xaxis.label.get_size())


def _band_title(quantiles: tuple[float, float]) -> str:
    return f"median, {quantiles[0]:.0%}-{quantiles[1]:.0%} band over seeds"


def curve_figure(title: str, curves: dict[int, SeedCurves], quantity: str,
                 quantiles: tuple[float, float]) -> Figure:
    """SIC (``quantity="sic"``) or background rejection 1/FPR (``"rejection"``) versus signal
    efficiency: median and band (``quantiles``) over seeds for each injection ``{nsig: SeedCurves}``."""
    with style():
        figure = _figure(figsize=(10, 8))
        ax = figure.subplots()
        colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(len(curves), 1)))
        for color, (nsig, curve) in zip(colors, sorted(curves.items())):
            values = getattr(curve, quantity)
            ax.plot(curve.tpr, values.median, color=color, label=f"$N_{{sig}}$ = {nsig}")
            ax.fill_between(curve.tpr, values.low, values.high, color=color, alpha=0.25, linewidth=0)
        efficiency = np.linspace(0.01, 1.0, 100)
        random = np.sqrt(efficiency) if quantity == "sic" else 1.0 / efficiency
        ax.plot(efficiency, random, color="grey", linestyle=":", label="random")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"Signal efficiency $\epsilon_S$")
        if quantity == "sic":
            ax.set_ylabel(r"SIC = $\epsilon_S / \sqrt{\epsilon_B}$")
            ax.set_ylim(bottom=0.0)
        else:
            ax.set_ylabel(r"Background rejection $1 / \epsilon_B$")
            ax.set_yscale("log")
        ax.legend(title=f"{title}: {_band_title(quantiles)}", fontsize="small", title_fontsize="small")
        _label(ax)
    return figure


def versus_nsig_figure(results: dict[str, list[Injection]], quantity: str,
                       quantiles: tuple[float, float], high_level: frozenset[str] = frozenset()) -> Figure:
    """Max SIC (``quantity="max_sic"``) or AUC (``"auc"``) versus injected signal, one series per
    mode ``{mode: [Injection, ...]}``: median and band (``quantiles``) over seeds. The modes in
    ``high_level`` (the CATHODE baseline on four features) are drawn dashed with open markers."""
    with style():
        figure = _figure(figsize=(10, 8))
        ax = figure.subplots()
        for marker, (mode, injections) in zip("osD^vP*X", sorted(results.items())):
            nsig = [injection.nsig for injection in injections]
            bands = [getattr(injection, quantity) for injection in injections]
            median, low, high = (np.array([float(getattr(band, part)) for band in bands])
                                 for part in ("median", "low", "high"))
            dashed = {"linestyle": "--", "markerfacecolor": "none"} if mode in high_level else {}
            ax.errorbar(nsig, median, yerr=[median - low, high - median], marker=marker, capsize=4,
                        color=GENERATOR_COLORS.get(generator_of(mode)),
                        label=f"{mode} (4 features)" if mode in high_level else mode, **dashed)
        if quantity == "auc":
            ax.axhline(0.5, color="grey", linestyle=":")
        else:
            ax.set_ylim(bottom=0.0)
        ax.set_xlabel(r"Signal events in class 1 $N_{sig}$")
        ax.set_ylabel({"max_sic": "Maximum SIC", "auc": "AUC"}[quantity])
        ax.legend(title=_band_title(quantiles), fontsize="small", title_fontsize="small")
        _label(ax)
    return figure


def generator_of(mode: str) -> str | None:
    """The generator whose templates a score directory's trainings used (``classify.method_name``:
    ``...-flow_matching...`` for flow matching, other cwola and two-sample modes diffusion), or None."""
    if "flow_matching" in mode:
        return "flow_matching"
    return "diffusion" if mode.startswith(("cwola", "two-sample")) else None


def feature_values(events: Events) -> dict[str, np.ndarray]:
    """The plotted features of ``events`` (``FEATURES``), computed as the fidelity report's W1
    features are (``fidelity.feature_values``): both jets, event features once, real particles."""
    values = fidelity.feature_values(events)
    return {name: values[name] for name in FEATURES}


def binning(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bin edges per feature from a sample's 0.1-99.9 % quantiles (integer bins for N)."""
    edges = {}
    for name, (_, logarithmic, _) in FEATURES.items():
        sample = values[name][np.isfinite(values[name])]
        if logarithmic:
            sample = sample[sample > 0]
        low, high = np.quantile(sample, [0.001, 0.999]) if len(sample) else (0.0, 1.0)
        high = max(high, low + 1e-6)
        if name == "jet_n_constituents":
            edges[name] = np.unique(np.round(np.linspace(np.floor(low), np.ceil(high) + 1, N_BINS + 1))) - 0.5
        elif logarithmic:
            edges[name] = np.geomspace(low, high, N_BINS + 1)
        else:
            edges[name] = np.linspace(low, high, N_BINS + 1)
    return edges


def feature_histograms(generated: dict[str, str | os.PathLike], reference: str | os.PathLike,
                       progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """``{feature: {"edges", "reference", <label>: counts...}}`` of the reference file and of each
    generated file ``{label: path}`` (labels are generators: ``GENERATOR_COLORS``)."""
    edges = binning(feature_values(next(processed.chunks(reference, size=READ_CHUNK))))
    histograms = {name: {"edges": edge} for name, edge in edges.items()}
    for sample, path in (*generated.items(), ("reference", reference)):
        counts = {name: np.zeros(len(edge) - 1) for name, edge in edges.items()}
        for events in tqdm(processed.chunks(path, size=READ_CHUNK), desc=f"histograms of {Path(path).name}",
                           total=-(-processed.count(path) // READ_CHUNK), unit="chunk", disable=not progress):
            for name, values in feature_values(events).items():
                counts[name] += np.histogram(values, edges[name])[0]
        for name in edges:
            histograms[name][sample] = counts[name]
    return histograms


def generated_samples(histogram: dict[str, np.ndarray]) -> list[str]:
    """The labels of the generated samples of one feature's histograms."""
    return [sample for sample in histogram if sample not in ("edges", "reference")]


def wasserstein(histogram: dict[str, np.ndarray], sample: str) -> float:
    """Earth mover's distance between the binned generated ``sample`` and reference distributions."""
    edges = histogram["edges"]
    centres = 0.5 * (edges[1:] + edges[:-1])
    if histogram[sample].sum() == 0 or histogram["reference"].sum() == 0:
        return float("nan")
    return float(wasserstein_distance(centres, centres, histogram[sample], histogram["reference"]))


def feature_figure(histograms: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Panels (4 a row) of normalised generated and reference distributions, each with a ratio panel."""
    columns = 4
    rows = -(-len(FEATURES) // columns)
    with style():
        figure = _figure(figsize=(9 * columns, 8.3 * rows))
        outer = figure.add_gridspec(rows, columns, hspace=0.22, wspace=0.28)
        for index, (name, (xlabel, log_x, log_y)) in enumerate(FEATURES.items()):
            cell = outer[divmod(index, columns)].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
            main = figure.add_subplot(cell[0])
            ratio = figure.add_subplot(cell[1], sharex=main)
            _feature_panel(main, ratio, histograms[name], xlabel, log_x, log_y)
            if index == 0:
                main.legend(fontsize="small")
                _label(main)
    return figure


def _feature_panel(main: Axes, ratio: Axes, histogram: dict[str, np.ndarray], xlabel: str,
                   log_x: bool, log_y: bool) -> None:
    edges = histogram["edges"]
    widths = np.diff(edges)
    centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
    densities = {}
    for sample in ("reference", *generated_samples(histogram)):
        counts = histogram[sample]
        norm = max(counts.sum(), 1.0) * widths
        densities[sample] = (counts / norm, np.sqrt(counts) / norm)
        color = "black" if sample == "reference" else GENERATOR_COLORS.get(sample, "tab:red")
        mplhep.histplot(counts / norm, edges, yerr=np.sqrt(counts) / norm, ax=main, color=color, label=sample)
    reference, reference_error = densities["reference"]
    for sample in generated_samples(histogram):
        generated, generated_error = densities[sample]
        with np.errstate(divide="ignore", invalid="ignore"):
            value = generated / reference
            error = value * np.hypot(generated_error / generated, reference_error / reference)
        ratio.errorbar(centres, value, yerr=error, xerr=widths / 2, linestyle="none", marker=".",
                       color=GENERATOR_COLORS.get(sample, "tab:red"))
    ratio.axhline(1.0, color="black", linewidth=1)
    ratio.set_ylim(0.5, 1.5)
    ratio.set_ylabel("gen./ref.", fontsize="small")
    ratio.set_xlabel(xlabel)
    main.set_ylabel("Normalised", fontsize="small")
    main.tick_params(labelbottom=False)
    if log_x:
        main.set_xscale("log")
    if log_y:
        main.set_yscale("log")
