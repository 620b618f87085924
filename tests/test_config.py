"""The configuration loader: every paper value reachable, every typo caught."""
from pathlib import Path

import pytest

from lhco_diffusion import config as config_module
from lhco_diffusion.config import ConfigError

from conftest import CONFIGS


@pytest.mark.parametrize("name", ["default", "test", "lhco_279", "lhco_100"])
def test_shipped_configs_load(name):
    config = config_module.load(CONFIGS / f"{name}.yaml")
    assert config.source.endswith(f"{name}.yaml")
    assert config.data.signal_region == (3300.0, 3700.0)


def test_paper_config_holds_table_one_values():
    config = config_module.load(CONFIGS / "lhco_279.yaml")
    assert config.data.npart == 279
    assert config.training.batch_size == 128
    assert config.training.epochs == 300
    assert config.training.early_stopping_patience == 50
    assert config.training.ema_decay == 0.999
    # 16 workers x 1e-4 per worker = 1.6e-3, the initial learning rate of Table I
    assert 16 * config.training.learning_rate == pytest.approx(1.6e-3)
    assert config.training.scale_learning_rate
    assert config.sampling.solver == "ddim2" and config.sampling.num_steps == 512
    assert config.sampling.n_events == 200_000
    assert config.classifier.learning_rate == 1e-3


@pytest.mark.parametrize("name", ["lhco_279", "lhco_100", "lhco_279_fm"])
def test_paper_configs_keep_the_paper_choices_the_cpu_configs_depart_from(name):
    """README, 'Where the CPU-scale configurations depart from the paper'."""
    config = config_module.load(CONFIGS / f"{name}.yaml")
    assert config.transforms.pt_rel_transform == "log_one_minus"
    assert config.transforms.jet_statistics == "pooled" and not config.transforms.constituent_closure
    assert config.transforms.jet_eta == "absolute"
    assert not config.jet_model.jet_index and not config.training.ema_warmup
    assert config.training.jet_noise_draws == 1
    assert not config.sampling.exact_mjj and not config.sampling.apply_data_selection
    assert config.classifier.min_epochs == 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.epoch=3", "did you mean 'training.epochs'"),
        ("trainig.epochs=3", "did you mean 'training'"),
        ("training.epochs=three", "must be of type int"),
        ("training.epochs=true", "must be of type int"),
        ("data.signal_region=[3300]", "must have 2 entries"),
        ("sampling.solver=euler", "must be one of ddim, ddim2, dpm2"),
        ("data.signal_region=[2000, 3000]", "strictly inside"),
        ("data.sideband_fractions=[0.5, 0.5, 0.5]", "sum to 1"),
        ("epochs=3", "section.key=value"),
    ],
)
def test_bad_values_name_the_key_and_file(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        config_module.load(CONFIGS / "test.yaml", [override])
    if "section.key" not in message:
        assert "test.yaml" in str(error.value)


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("training:\n  learnig_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'training.learnig_rate'; "
                                          r"did you mean 'training.learning_rate'"):
        config_module.load(path)


def test_overrides_parse_yaml_values():
    config = config_module.load(
        CONFIGS / "test.yaml",
        ["training.learning_rate=1e-3", "data.raw=null", "classifier.nsig=[10, 20]"],
    )
    assert config.training.learning_rate == 1e-3
    assert config.data.raw is None
    assert config.classifier.nsig == (10, 20)


def test_yaml_round_trip(tmp_path):
    config = config_module.load(CONFIGS / "lhco_279.yaml")
    path = tmp_path / "copy.yaml"
    path.write_text(config.to_yaml())
    assert config_module.load(path).to_dict() == config.to_dict()


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        config_module.load(CONFIGS / "nope.yaml")


@pytest.mark.parametrize("text, expected", [
    ("${PSCRATCH:-/fallback}/lhco", "/ps/lhco"),
    ("${EMPTY:-/fallback}/lhco", "/fallback/lhco"),                    # set but empty: the fallback
    ("${UNSET:-${SCRATCH:-/last}}/lhco", "/s/lhco"),                     # nested
    ("${UNSET:-${ALSO_UNSET:-~/.cache}}/lhco", "~/.cache/lhco"),         # ~ of the fallback expanded
    ("$PSCRATCH/runs", "/ps/runs"),
    ("$UNSET/runs", "$UNSET/runs"),                                      # plain $NAME unset: left as written
    ("runs/test", "runs/test"),
])
def test_expand_environment_variables_with_fallbacks(text, expected, monkeypatch):
    monkeypatch.setenv("PSCRATCH", "/ps")
    monkeypatch.setenv("SCRATCH", "/s")
    monkeypatch.setenv("EMPTY", "")
    for name in ("UNSET", "ALSO_UNSET"):
        monkeypatch.delenv(name, raising=False)
    assert config_module.expand(text) == Path(expected).expanduser()


@pytest.mark.parametrize("name", ["lhco_279", "lhco_100"])
@pytest.mark.parametrize("pscratch, scratch, root", [("/global/ps/u", "/global/s/u", "/global/ps/u"),
                                                      (None, "/global/s/u", "/global/s/u"),
                                                      ("", "/global/s/u", "/global/s/u")])
def test_cluster_configs_write_under_scratch(name, pscratch, scratch, root, monkeypatch):
    for variable, value in (("PSCRATCH", pscratch), ("SCRATCH", scratch)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    config = config_module.load(CONFIGS / f"{name}.yaml")
    assert config_module.expand(config.paths.cache_dir) == Path(root, "lhco_diffusion")
    assert config_module.expand(config.paths.run_dir) == Path(root, "runs", name)
    # the user's override wins
    moved = config_module.load(CONFIGS / f"{name}.yaml", ["paths.run_dir=/cfs/m0000/run"])
    assert config_module.expand(moved.paths.run_dir) == Path("/cfs/m0000/run")


@pytest.mark.parametrize("name", ["lhco_279", "lhco_100"])
def test_cluster_configs_without_scratch_stay_off_a_literal_dollar(name, monkeypatch):
    monkeypatch.delenv("PSCRATCH", raising=False)
    monkeypatch.delenv("SCRATCH", raising=False)
    config = config_module.load(CONFIGS / f"{name}.yaml")
    assert config_module.expand(config.paths.cache_dir) == Path.home() / ".cache" / "lhco_diffusion"
    assert config_module.expand(config.paths.run_dir) == Path("runs", name)
