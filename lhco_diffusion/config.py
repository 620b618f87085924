"""Run configuration: YAML files -> frozen, validated dataclasses.

Every tunable of the package lives in one of the sections below; ``configs/*.yaml`` set them.
The one top-level key, ``generator`` (``diffusion`` | ``flow_matching``), picks the background
generator; ``sampling.solver`` must be one of that generator's solvers (``GENERATOR_SOLVERS``).
Unknown or mistyped keys are errors that name the file, the key and the closest valid name, so a
typo never silently falls back to a default.

    config = load("configs/default.yaml", overrides=["training.epochs=3"])
    config.training.batch_size        # -> 128

Overrides use ``section.key=value`` with the value parsed as YAML (``[3300, 3700]``, ``null``,
``1e-3`` all work); every command line takes them as ``--set section.key=value`` (and
``--set generator=flow_matching``).

Every value is checked for its type, floats for finiteness (no NaN or infinity anywhere), and
against the range or choices declared beside its field (``at_least``, ``positive``, ``within``,
``one_of``); a list key's range applies to each entry.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lhco_diffusion.errors import InputError


class ConfigError(InputError):
    """A configuration file or override that cannot be used, explained in one sentence."""


@dataclass(frozen=True)
class Range:
    """The values a numeric key (or each entry of a list key) may take: ``low`` to ``high``,
    each end included unless ``*_open``, and a multiple of ``multiple_of``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    multiple_of: int = 1

    def __contains__(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below and (self.multiple_of == 1 or value % self.multiple_of == 0)

    def __str__(self) -> str:
        if self.high == math.inf:
            text = f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        else:
            text = (f"in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        return text + (f" and a multiple of {self.multiple_of}" if self.multiple_of > 1 else "")


def at_least(minimum: float, default, multiple_of: int = 1):
    """A field whose value (or each entry) must be >= ``minimum``."""
    return field(default=default, metadata={"range": Range(minimum, multiple_of=multiple_of)})


def positive(default):
    """A field whose value (or each entry) must be > 0."""
    return field(default=default, metadata={"range": Range(0.0, low_open=True)})


def within(low: float, high: float, default, low_open: bool = False, high_open: bool = False):
    """A field whose value (or each entry) must lie between ``low`` and ``high``."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open)})


def one_of(*choices: str, default: str):
    """A field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class PathsConfig:
    """Where files go. Relative paths are relative to the working directory, ``~`` is expanded."""

    cache_dir: str = "~/.cache/lhco_diffusion"  # generated raw files and prepared data
    run_dir: str = "runs/default"  # checkpoints, logs, samples, scores, plots of this run


@dataclass(frozen=True)
class DataConfig:
    """Raw input, event selection, regions and splits."""

    raw: str | None = None  # LHCO R&D pandas-HDF file; null -> synthetic events (demo)
    extra_background: str | None = None  # extra SR background sample (Zenodo 5759086), optional
    processed: str | None = None  # an already prepared HDF5 file; null -> prepared into cache_dir
    synthetic_events: int = at_least(1, default=20_000)  # raw events the synthetic generator writes
    synthetic_signal_fraction: float = within(0.0, 1.0, default=0.1)
    pythia: bool = False  # make the raw file with Pythia 8 instead of the numpy toy
    seed: int = at_least(0, default=1234)
    npart: int = at_least(1, default=279)  # constituents kept per jet (P)
    jet_radius: float = positive(1.0)
    min_leading_jet_pt: float = at_least(0.0, default=1200.0)  # GeV
    chunk_size: int = at_least(1, default=10_000)  # raw events read per chunk
    workers: int = at_least(1, default=1)  # clustering processes
    signal_region: tuple[float, float] = at_least(0.0, default=(3300.0, 3700.0))  # GeV
    sideband: tuple[float, float] = at_least(0.0, default=(2300.0, 5000.0))  # GeV; the SR inside it is excluded
    # train, test, validation
    sideband_fractions: tuple[float, float, float] = within(0.0, 1.0, default=(0.5, 0.1, 0.4), low_open=True)
    # mjj values the KDE is fitted to: the search's SR data (background + largest injection) or the sideband
    kde_source: str = one_of("signal_region", "sideband", default="signal_region")
    kde_bandwidth: float = positive(0.001)  # TeV (Gaussian kernel on mjj in TeV)
    pad_to_longest: bool = True  # pad each batch only to its longest jet
    bucketing: bool = True  # training batches of similar multiplicity (see lhco_diffusion.data.dataset)
    # batches per shuffle window inside which events are grouped by multiplicity
    bucket_window: int = at_least(1, default=32)


@dataclass(frozen=True)
class TransformsConfig:
    """Model-space transforms (see lhco_diffusion.data.transforms)."""

    # pT_rel is clipped to [epsilon, 1 - epsilon] before the logarithm
    pt_rel_epsilon: float = within(0.0, 1.0, default=1.0e-6, low_open=True, high_open=True)
    # log(1 - pT_rel) (the paper) | log: log(pT_rel), which resolves soft particles
    pt_rel_transform: str = one_of("log_one_minus", "log", default="log_one_minus")
    # pooled: one mean and width per jet feature for both jets | per_jet: the leading jet and its
    # partner each standardised on their own, so the small back-to-back deviation is seen at unit scale
    jet_statistics: str = one_of("pooled", "per_jet", default="pooled")
    # the generators only: each jet's model features also carry the closure of its stored
    # particles (their pT_rel sum and pT-weighted centroid), and the particle model generates the
    # cloud normalised to sum 1 about its centroid, the constraints made exact at sampling; false: the paper
    constituent_closure: bool = False
    # with the closure, the jet feature carrying the pT_rel sum S: log: log S | asinh: asinh((S - 1) / 1e-4),
    # which sets apart the jets stored whole (S >= 1, by a few 1e-4) from those cut at P particles (S < 1)
    closure_sum: str = one_of("log", "asinh", default="log")
    # linear: the particles' (deta, dphi) as they are (the paper) | asinh: each moved along its
    # direction from the jet's centre (the centroid with the closure, else the jet axis) to the
    # distance asinh(dR / 0.01), so the cores of narrow jets (dR ~ 0.01-0.03) and the wide-angle
    # tails (up to dR ~ 1) meet the particle network at comparable scales
    particle_angles: str = one_of("linear", "asinh", default="linear")
    # absolute: each jet's eta (the paper) | gap: the leading jet's eta slot carries the two jets'
    # mean eta and the partner's their eta difference divided by the largest difference the
    # leading-jet selection allows at the event's mjj (see ``transforms.eta_gap_bound``), so the
    # sharp edge of the difference sits near 1 at every mjj instead of moving with it | selection:
    # the same boost, and the logit of the difference over the exact bound of the event's own jets
    # (``transforms.selection_gap_bound``), so that with sampling.exact_mjj every generated event
    # passes the selection and the leading-jet pT edge is no cliff to the model
    jet_eta: str = one_of("absolute", "gap", "selection", default="absolute")


@dataclass(frozen=True)
class NetworkConfig:
    """A transformer point-cloud network (jet or particle diffusion model)."""

    num_embed: int = at_least(2, default=64, multiple_of=2)  # width of the Fourier time/mjj embeddings
    projection_dim: int = at_least(1, default=128)  # token width inside the transformer
    num_layers: int = at_least(1, default=6)  # transformer blocks
    num_heads: int = at_least(1, default=2)
    # jet_model only: each jet token carries its index (0: the leading-pT jet, 1: the other), so the
    # network can learn the ordered pair; false (the paper) leaves it equivariant to swapping them
    jet_index: bool = False


@dataclass(frozen=True)
class FlowMatchingJetConfig:
    """The flow-matching jet network: fully connected on the two jets' 10 features (paper Fig. 2)."""

    hidden_dim: int = at_least(1, default=256)  # width of every hidden layer
    num_layers: int = at_least(1, default=5)  # residual hidden layers after the input layer
    frequencies: int = at_least(1, default=16)  # Fourier frequencies of t (2 x this many features)


@dataclass(frozen=True)
class EpicConfig:
    """The flow-matching particle network: EPiC layers (EPiC-FM, arXiv:2310.00049)."""

    hidden_dim: int = at_least(1, default=150)  # per-particle width
    latent_dim: int = at_least(1, default=256)  # width of the global vector
    num_layers: int = at_least(1, default=8)  # EPiC layers
    frequencies: int = at_least(1, default=16)  # Fourier frequencies of t, concatenated to local and global inputs
    sum_scale: float = positive(1.0e-2)  # factor on the sum-pooled particle features
    weight_norm: bool = True  # weight-normalised dense layers


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of either generator (paper Table I)."""

    epochs: int = at_least(1, default=300)
    batch_size: int = at_least(1, default=128)  # per worker; the global batch is batch_size * workers
    learning_rate: float = positive(1.0e-4)  # per worker; see scale_learning_rate
    scale_learning_rate: bool = True  # multiply by the number of workers (16 x 1e-4 = 1.6e-3)
    early_stopping_patience: int = at_least(1, default=50)  # epochs without a lower test loss
    ema_decay: float = within(0.0, 1.0, default=0.999, high_open=True)
    # decay min(ema_decay, (1 + n) / (10 + n)) after optimizer step n, so the average of a short run
    # forgets its random start; false (the paper): ema_decay from the first step
    ema_warmup: bool = False
    clip_norm: float = positive(1.0)  # gradient-norm clipping per tensor
    likelihood_weighting: bool = False  # diffusion: lambda = g^2 with t uniform in log-SNR
    # noise draws per event in each step's jet loss: the jet model costs a few % of the particle
    # model per draw and learns slower, so K draws average its gradient over K times the noise
    jet_noise_draws: int = at_least(1, default=1)
    # each event's loss weighted by p_SB(mjj)^-power (data.mjj_weights): 0 (the paper) none, 1 every
    # mjj alike; moves the training toward the sparse high-mjj sideband, not its optimum p(x | mjj)
    mjj_weight_power: float = within(0.0, 1.0, default=0.0)
    sigma_min: float = positive(1.0e-4)  # flow matching: width of the data end of the probability path
    optimizer: str = one_of("adam", "adamw", default="adam")
    weight_decay: float = at_least(0.0, default=0.0)  # adamw's decoupled weight decay
    warmup_epochs: int = at_least(0, default=0)  # linear warm-up to learning_rate before the cosine decay
    steps_per_epoch: int | None = at_least(1, default=None)  # null -> one pass over the local shard
    # stop after the epoch in which this much training time ran out; 0: none
    time_budget_minutes: float = at_least(0.0, default=0.0)
    seed: int = at_least(0, default=1233)
    jit_compile: bool = False  # XLA-compile the training step (single worker; minutes per batch shape on a CPU)
    # the networks' compute precision (variables, losses, EMA and sampler state stay float32)
    mixed_precision: str = one_of("float32", "bfloat16", "float16", default="float32")


# The generators and the sampling.solver values each accepts (solvers.sampling.SOLVERS and
# solvers.flow.SOLVERS implement them; tests check that the lists agree).
GENERATOR_SOLVERS = {"diffusion": ("ddim", "ddim2", "dpm2", "dpm2m"), "flow_matching": ("euler", "midpoint", "heun")}
SOLVERS = tuple(solver for solvers in GENERATOR_SOLVERS.values() for solver in solvers)


@dataclass(frozen=True)
class SamplingConfig:
    """Generation with a trained generator."""

    solver: str = one_of(*SOLVERS, default="ddim2")  # of the generator's GENERATOR_SOLVERS
    num_steps: int = at_least(1, default=512)
    n_events: int = at_least(1, default=200_000)  # SR background events to generate
    batch_size: int = at_least(1, default=1000)
    mode: str = one_of("noise", "partial-sr", "partial-sb", "partial-ref", default="noise")
    t_star: float = within(0.0, 1.0, default=1.0, low_open=True)  # partial diffusion: noise level to start from
    oversampling: int = at_least(1, default=1)  # partial diffusion: re-noisings of each source event
    seed: int = at_least(0, default=7)
    # events per multiplicity bucket of the particle sampler; null -> none
    bucket_size: int | None = at_least(1, default=256)
    jit_compile: bool = True  # XLA-compile the sampler's step loop
    # scale each event's jet pT and mass so that their dijet mass is the mjj condition, as in data
    exact_mjj: bool = False
    # draw generated events without a jet above data.min_leading_jet_pt again, as data never have one
    apply_data_selection: bool = False


@dataclass(frozen=True)
class LikelihoodConfig:
    """Probability-flow ODE log-likelihood."""

    exact_divergence: bool = False  # False -> Hutchinson with Rademacher probes
    atol: float = positive(5.0e-5)
    rtol: float = positive(1.0e-4)
    batch_size: int = at_least(1, default=256)


@dataclass(frozen=True)
class ClassifierConfig:
    """The dijet transformer classifier and the weakly supervised training sets."""

    projection_dim: int = at_least(1, default=64)
    num_layers: int = at_least(1, default=4)
    num_heads: int = at_least(1, default=2)
    dropout: float = within(0.0, 1.0, default=0.1, high_open=True)
    epochs: int = at_least(1, default=300)
    batch_size: int = at_least(1, default=128)
    learning_rate: float = positive(1.0e-3)
    early_stopping_patience: int = at_least(1, default=20)
    # no early stop before this epoch: the classifier may sit at loss ln 2 for a few epochs first
    min_epochs: int = at_least(0, default=0)
    validation_fraction: float = within(0.0, 1.0, default=0.2, low_open=True, high_open=True)
    n_background: int = at_least(1, default=100_000)  # SR background events in the pseudo-data
    n_generated: int = at_least(1, default=200_000)  # generated SR events trained against them
    oversampling: int = at_least(1, default=1)
    n_test_background: int = at_least(1, default=100_000)  # independent test set
    n_test_signal: int = at_least(1, default=100_000)
    nsig: tuple[int, ...] = at_least(0, default=(500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10000))
    seeds: int = at_least(1, default=10)  # classifier trainings per injection


@dataclass(frozen=True)
class FlowConfig:
    """The CATHODE baseline: a conditional MAF on four high-level features (workflow.cathode_flow)."""

    num_layers: int = at_least(1, default=8)  # MADE blocks, reverse permutations between them
    hidden_units: tuple[int, ...] = at_least(1, default=(64, 64))  # hidden layers of each MADE block
    epochs: int = at_least(1, default=100)
    batch_size: int = at_least(1, default=256)
    learning_rate: float = positive(1.0e-4)
    early_stopping_patience: int = at_least(1, default=10)  # epochs without a lower sideband test loss
    oversampling: int = at_least(1, default=4)  # sampled SR template events per SR data event
    classifier: str = one_of("mlp", "hgb", default="mlp")  # hgb: scikit-learn histogram gradient boosting
    seed: int = at_least(0, default=1235)  # flow initialisation and batch order


@dataclass(frozen=True)
class EvaluationConfig:
    """SIC/ROC evaluation and plots."""

    min_background_events: int = at_least(1, default=10)  # cuts leaving fewer test-background events are dropped
    band_quantiles: tuple[float, float] = within(0.0, 1.0, default=(0.16, 0.84))  # 68 % band over seeds
    formats: tuple[str, ...] = ("png", "pdf")


@dataclass(frozen=True)
class Config:
    """The whole run configuration; ``source`` is the file it was read from."""

    generator: str = "diffusion"  # diffusion | flow_matching (a top-level key, not a section)
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    jet_model: NetworkConfig = field(default_factory=NetworkConfig)
    particle_model: NetworkConfig = field(default_factory=NetworkConfig)
    flow_matching_jet_model: FlowMatchingJetConfig = field(default_factory=FlowMatchingJetConfig)
    flow_matching_particle_model: EpicConfig = field(default_factory=EpicConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict:
        """Plain nested dict of every section (no ``source``), ready for YAML or JSON."""
        return {"generator": self.generator, **{
            f.name: _plain(dataclasses.asdict(getattr(self, f.name)))
            for f in dataclasses.fields(self)
            if f.name not in ("source", "generator")
        }}

    def to_yaml(self) -> str:
        """The full configuration as YAML text: every output file records it."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **sections) -> "Config":
        """A copy with whole sections replaced, e.g. ``config.replace(training=...)``."""
        return dataclasses.replace(self, **sections)


def load(path: str | os.PathLike, overrides: typing.Iterable[str] = ()) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides, validate, return a ``Config``.

    Raises ``ConfigError`` naming the file, the offending key and the closest valid name.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file") from None
    if raw is None:
        raise ConfigError(f"{path} is empty; give at least one section (see configs/default.yaml)")
    return from_dict(raw, source=str(path), overrides=overrides)


def from_dict(raw: dict, source: str = "<dict>", overrides: typing.Iterable[str] = ()) -> Config:
    """Build a ``Config`` from nested dicts (the parsed YAML), with overrides applied on top."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must hold a mapping of sections, not {type(raw).__name__}")
    raw = dict(raw)
    generator = raw.pop("generator", Config.generator)
    section_fields = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("source", "generator")}
    values = {name: _section_values(name, section, section_fields, source) for name, section in raw.items()}
    for override in overrides:
        section, key, value = _parse_override(override)
        if key is None:  # generator=NAME
            generator = value
            continue
        if section not in values:
            values[section] = _section_values(section, {}, section_fields, source)
        values[section][key] = value
    if not isinstance(generator, str) or generator not in GENERATOR_SOLVERS:
        raise ConfigError(f"{source}: generator must be one of {', '.join(GENERATOR_SOLVERS)}, not '{generator}'")
    sections = {name: _build_section(name, _section_type(section_fields[name]), section, source)
                for name, section in values.items()}
    config = Config(generator=generator, **sections, source=source)
    _check_consistency(config)
    return config


def _section_values(name, section, section_fields: dict, source: str) -> dict:
    """A copy of one section's ``{key: value}`` (empty for a bare ``section:``), or ``ConfigError``."""
    if name not in section_fields:
        raise ConfigError(_unknown("section", name, section_fields, source))
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: section '{name}' must be a mapping of keys, not a {type(section).__name__}")
    return dict(section)


def _parse_override(override: str) -> tuple[str, str | None, object]:
    target, sep, text = override.partition("=")
    section, dot, key = target.strip().partition(".")
    if sep and section == "generator" and not dot:
        key = None  # the one top-level key: generator=NAME
    elif not sep or not dot or not section or not key:
        raise ConfigError(f"override '{override}' must look like section.key=value (or generator=NAME)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return section, key, value


def _section_type(section_field: dataclasses.Field) -> type:
    return section_field.default_factory().__class__


def _build_section(name: str, section_type: type, values: dict, source: str):
    hints = typing.get_type_hints(section_type)
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(_unknown("key", f"{name}.{key}", {f"{name}.{k}" for k in fields}, source))
        converted[key] = _convert(value, hints[key], f"{name}.{key}", source)
        _check_declared(converted[key], fields[key].metadata, f"{name}.{key}", source)
    return section_type(**converted)


def _check_declared(value, metadata, key: str, source: str) -> None:
    """``ConfigError`` unless ``value`` (each entry of a list) obeys the field's range or choices."""
    allowed = metadata.get("choices")
    if allowed and value not in allowed:
        raise ConfigError(f"{source}: {key} must be one of {', '.join(allowed)}, not '{value}'")
    bounds = metadata.get("range")
    if bounds is None or value is None:
        return
    for item in value if isinstance(value, tuple) else (value,):
        if item not in bounds:
            entries = "every entry of " if isinstance(value, tuple) else ""
            raise ConfigError(f"{source}: {entries}{key} must be {bounds}, not {_plain(value)}")


def _convert(value, hint, key: str, source: str):
    """Check ``value`` against the annotation ``hint``; ints are accepted where floats are,
    floats must be finite and strings non-empty."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(option for option in options if option is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, not {value!r}")
        args = typing.get_args(hint)
        if args and args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{source}: {key} must have {len(args)} entries, not {len(value)}")
        item_hints = [args[0]] * len(value) if args[-1:] == (Ellipsis,) else list(args)
        return tuple(_convert(item, item_hint, key, source) for item, item_hint in zip(value, item_hints))
    if hint is float:
        number = _float(value)
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{source}: {key} must be a finite number, not {value!r}")
            return number
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        if hint is str and not value.strip():
            raise ConfigError(f"{source}: {key} must not be empty")
        return value
    raise ConfigError(f"{source}: {key} must be of type {hint.__name__}, not {value!r}")


def _float(value) -> float | None:
    """``value`` as a float if it is a number (not a bool) or a numeric string, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            return None
    return None


def _unknown(kind: str, name, valid: typing.Iterable[str], source: str) -> str:
    name = str(name)
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(sorted(valid))}"
    return f"{source}: unknown {kind} '{name}'{hint}"


def _check_consistency(config: Config) -> None:
    data = config.data
    low, high = data.signal_region
    side_low, side_high = data.sideband
    if not side_low < low < high < side_high:
        raise ConfigError(
            f"{config.source}: data.signal_region {list(data.signal_region)} must lie strictly "
            f"inside data.sideband {list(data.sideband)}"
        )
    if abs(sum(data.sideband_fractions) - 1.0) > 1e-6:
        raise ConfigError(f"{config.source}: data.sideband_fractions must be positive and sum to 1")
    low_quantile, high_quantile = config.evaluation.band_quantiles
    if not low_quantile < high_quantile:
        raise ConfigError(f"{config.source}: evaluation.band_quantiles must be increasing, not "
                          f"{list(config.evaluation.band_quantiles)}")
    solvers = GENERATOR_SOLVERS[config.generator]
    if config.sampling.solver not in solvers:
        raise ConfigError(f"{config.source}: sampling.solver must be one of {', '.join(solvers)} for the "
                          f"{config.generator} generator, not '{config.sampling.solver}'")
    for name in ("jet_model", "particle_model", "classifier"):
        network = getattr(config, name)
        if network.projection_dim < network.num_heads:  # each attention head needs a width >= 1
            raise ConfigError(f"{config.source}: {name}.projection_dim ({network.projection_dim}) must be at "
                              f"least {name}.num_heads ({network.num_heads})")
    if config.particle_model.jet_index:
        raise ConfigError(f"{config.source}: particle_model.jet_index has no meaning (the particle network sees "
                          "one jet at a time); set jet_model.jet_index instead")


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


_FALLBACK = re.compile(r"\$\{(\w+):-([^${}]*)\}")  # ${NAME:-fallback}, innermost first


def expand(path: str) -> Path:
    """A configured path with environment variables, then a leading ``~``, expanded.

    ``$NAME`` and ``${NAME}`` are replaced when NAME is set (else left as written);
    ``${NAME:-fallback}`` is NAME's value when it is set and not empty, else ``fallback``, which
    may itself hold variables, another ``${...:-...}`` or a leading ``~``. So
    ``${PSCRATCH:-${SCRATCH:-~/.cache}}/lhco`` is ``$PSCRATCH/lhco`` on Perlmutter.
    """
    while (fallback := _FALLBACK.search(path)) is not None:
        name, default = fallback.groups()
        path = path[:fallback.start()] + (os.environ.get(name) or default) + path[fallback.end():]
    return Path(os.path.expanduser(os.path.expandvars(path)))
