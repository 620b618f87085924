"""Run configuration: YAML files -> frozen, validated dataclasses.

Every tunable of the package lives in one of the sections below; ``configs/*.yaml`` set them.
Unknown or mistyped keys are errors that name the file, the key and the closest valid name, so a
typo never silently falls back to a default.

    config = load("configs/default.yaml", overrides=["training.epochs=3"])
    config.training.batch_size        # -> 128

Overrides use ``section.key=value`` with the value parsed as YAML (``[3300, 3700]``, ``null``,
``1e-3`` all work); every command line takes them as ``--set section.key=value``.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lhco_diffusion.errors import InputError


class ConfigError(InputError):
    """A configuration file or override that cannot be used, explained in one sentence."""


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
    synthetic_events: int = 20_000  # raw events the synthetic generator writes
    synthetic_signal_fraction: float = 0.1
    pythia: bool = False  # make the raw file with Pythia 8 instead of the numpy toy
    seed: int = 1234
    npart: int = 279  # constituents kept per jet (P)
    jet_radius: float = 1.0
    min_leading_jet_pt: float = 1200.0  # GeV
    chunk_size: int = 10_000  # raw events read per chunk
    workers: int = 1  # clustering processes
    signal_region: tuple[float, float] = (3300.0, 3700.0)  # GeV
    sideband: tuple[float, float] = (2300.0, 5000.0)  # GeV; the SR inside it is excluded
    sideband_fractions: tuple[float, float, float] = (0.5, 0.1, 0.4)  # train, test, validation
    kde_source: str = "signal_region"  # mjj values the KDE is fitted to: signal_region | sideband
    kde_bandwidth: float = 0.001  # TeV (Gaussian kernel on mjj in TeV)
    pad_to_longest: bool = True  # pad each batch only to its longest jet
    bucketing: bool = True  # training batches of similar multiplicity (see lhco_diffusion.data.dataset)
    bucket_window: int = 32  # batches per shuffle window inside which events are grouped by multiplicity


@dataclass(frozen=True)
class TransformsConfig:
    """Model-space transforms (see lhco_diffusion.data.transforms)."""

    pt_rel_epsilon: float = 1.0e-6  # pT_rel is clipped to 1 - epsilon before log(1 - pT_rel)


@dataclass(frozen=True)
class NetworkConfig:
    """A transformer point-cloud network (jet or particle diffusion model)."""

    num_embed: int = 64  # width of the Fourier time/mjj embeddings
    projection_dim: int = 128  # token width inside the transformer
    num_layers: int = 6  # transformer blocks
    num_heads: int = 2


@dataclass(frozen=True)
class TrainingConfig:
    """Diffusion-model optimisation (paper Table I)."""

    epochs: int = 300
    batch_size: int = 128  # per worker; the global batch is batch_size * workers
    learning_rate: float = 1.0e-4  # per worker; see scale_learning_rate
    scale_learning_rate: bool = True  # multiply by the number of workers (16 x 1e-4 = 1.6e-3)
    early_stopping_patience: int = 50  # epochs without a lower test loss
    ema_decay: float = 0.999
    clip_norm: float = 1.0  # gradient-norm clipping per tensor
    likelihood_weighting: bool = False  # lambda = g^2 with t uniform in log-SNR
    steps_per_epoch: int | None = None  # null -> one pass over the local shard
    seed: int = 1233
    jit_compile: bool = False  # XLA-compile the training step (single worker; slow to compile on CPU)
    mixed_precision: str = "float32"  # float32 | bfloat16 | float16: the networks' compute precision


@dataclass(frozen=True)
class SamplingConfig:
    """Generation with the trained diffusion models."""

    solver: str = "ddim2"  # ddim | ddim2 | dpm2 | dpm2m (see lhco_diffusion.sampling)
    num_steps: int = 512
    n_events: int = 200_000  # SR background events to generate
    batch_size: int = 1000
    mode: str = "noise"  # noise | partial-sr | partial-sb | partial-ref
    t_star: float = 1.0  # partial diffusion: noise level the reverse pass starts from
    oversampling: int = 1  # partial diffusion: re-noisings of each source event
    seed: int = 7
    bucket_size: int | None = 256  # events per multiplicity bucket of the particle sampler; null -> none
    jit_compile: bool = True  # XLA-compile the sampler's step loop


@dataclass(frozen=True)
class LikelihoodConfig:
    """Probability-flow ODE log-likelihood."""

    exact_divergence: bool = False  # False -> Hutchinson with Rademacher probes
    atol: float = 5.0e-5
    rtol: float = 1.0e-4
    batch_size: int = 256


@dataclass(frozen=True)
class ClassifierConfig:
    """The dijet transformer classifier and the weakly supervised training sets."""

    projection_dim: int = 64
    num_layers: int = 4
    num_heads: int = 2
    dropout: float = 0.1
    epochs: int = 300
    batch_size: int = 128
    learning_rate: float = 1.0e-3
    early_stopping_patience: int = 20
    validation_fraction: float = 0.2
    n_background: int = 100_000  # SR background events in the pseudo-data
    n_generated: int = 200_000  # generated SR events trained against them
    oversampling: int = 1
    n_test_background: int = 100_000  # independent test set
    n_test_signal: int = 100_000
    nsig: tuple[int, ...] = (500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10000)
    seeds: int = 10  # classifier trainings per injection


@dataclass(frozen=True)
class FlowConfig:
    """The CATHODE baseline: a conditional MAF on four high-level features (lhco_diffusion.flow)."""

    num_layers: int = 8  # MADE blocks, reverse permutations between them
    hidden_units: tuple[int, ...] = (64, 64)  # hidden layers of each MADE block
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1.0e-4
    early_stopping_patience: int = 10  # epochs without a lower loss on the sideband test split
    oversampling: int = 4  # sampled SR template events per SR data event
    classifier: str = "mlp"  # mlp | hgb (scikit-learn histogram gradient boosting)
    seed: int = 1235  # flow initialisation and batch order


@dataclass(frozen=True)
class EvaluationConfig:
    """SIC/ROC evaluation and plots."""

    min_background_events: int = 10  # cuts leaving fewer test-background events are dropped
    band_quantiles: tuple[float, float] = (0.16, 0.84)  # 68 % band over seeds
    formats: tuple[str, ...] = ("png", "pdf")


@dataclass(frozen=True)
class Config:
    """The whole run configuration; ``source`` is the file it was read from."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    jet_model: NetworkConfig = field(default_factory=NetworkConfig)
    particle_model: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict:
        """Plain nested dict of every section (no ``source``), ready for YAML or JSON."""
        return {
            f.name: _plain(dataclasses.asdict(getattr(self, f.name)))
            for f in dataclasses.fields(self)
            if f.name != "source"
        }

    def to_yaml(self) -> str:
        """The full configuration as YAML text: every output file records it."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **sections) -> "Config":
        """A copy with whole sections replaced, e.g. ``config.replace(training=...)``."""
        return dataclasses.replace(self, **sections)


CHOICES = {
    ("data", "kde_source"): ("signal_region", "sideband"),
    ("sampling", "solver"): ("ddim", "ddim2", "dpm2", "dpm2m"),
    ("training", "mixed_precision"): ("float32", "bfloat16", "float16"),
    ("sampling", "mode"): ("noise", "partial-sr", "partial-sb", "partial-ref"),
    ("flow", "classifier"): ("mlp", "hgb"),
}


def load(path: str | os.PathLike, overrides: typing.Iterable[str] = ()) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides, validate, return a ``Config``.

    Raises ``ConfigError`` naming the file, the offending key and the closest valid name.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, not {type(raw).__name__}")
    return from_dict(raw, source=str(path), overrides=overrides)


def from_dict(raw: dict, source: str = "<dict>", overrides: typing.Iterable[str] = ()) -> Config:
    """Build a ``Config`` from nested dicts (the parsed YAML), with overrides applied on top."""
    raw = {name: dict(section or {}) for name, section in raw.items()}
    for override in overrides:
        section, key, value = _parse_override(override)
        raw.setdefault(section, {})[key] = value
    sections = {}
    section_fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "source"}
    for name, values in raw.items():
        if name not in section_fields:
            raise ConfigError(_unknown("section", name, section_fields, source))
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{name}' must be a mapping of keys")
        section_type = _section_type(section_fields[name])
        sections[name] = _build_section(name, section_type, values, source)
    config = Config(**sections, source=source)
    _check_consistency(config)
    return config


def _parse_override(override: str) -> tuple[str, str, object]:
    target, sep, text = override.partition("=")
    section, dot, key = target.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"override '{override}' must look like section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return section, key, value


def _section_type(section_field: dataclasses.Field) -> type:
    return section_field.default_factory().__class__


def _build_section(name: str, section_type: type, values: dict, source: str):
    hints = typing.get_type_hints(section_type)
    fields = {f.name for f in dataclasses.fields(section_type)}
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(_unknown("key", f"{name}.{key}", {f"{name}.{k}" for k in fields}, source))
        converted[key] = _convert(value, hints[key], f"{name}.{key}", source)
        allowed = CHOICES.get((name, key))
        if allowed and converted[key] not in allowed:
            raise ConfigError(
                f"{source}: {name}.{key} must be one of {', '.join(allowed)}, not '{converted[key]}'"
            )
    return section_type(**converted)


def _convert(value, hint, key: str, source: str):
    """Check ``value`` against the annotation ``hint``; ints are accepted where floats are."""
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
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: {key} must be of type {hint.__name__}, not {value!r}")


def _unknown(kind: str, name: str, valid: typing.Iterable[str], source: str) -> str:
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
    if abs(sum(data.sideband_fractions) - 1.0) > 1e-6 or min(data.sideband_fractions) <= 0:
        raise ConfigError(f"{config.source}: data.sideband_fractions must be positive and sum to 1")
    for name, value in (("data.npart", data.npart), ("training.batch_size", config.training.batch_size),
                        ("data.bucket_window", data.bucket_window), ("sampling.bucket_size", config.sampling.bucket_size or 1)):
        if value < 1:
            raise ConfigError(f"{config.source}: {name} must be at least 1")
    if not 0.0 < config.sampling.t_star <= 1.0:
        raise ConfigError(f"{config.source}: sampling.t_star must be in (0, 1]")


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def expand(path: str) -> Path:
    """A configured path with ``~`` and environment variables expanded."""
    return Path(os.path.expandvars(os.path.expanduser(path)))
