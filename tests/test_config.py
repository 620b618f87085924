"""The configuration loader: every paper value reachable, every typo caught."""
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
