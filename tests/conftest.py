"""Shared fixtures: the tiny test configuration and a small prepared synthetic dataset.

Every file a test writes goes under pytest's temporary directories, never into the user's cache.
Tests that take more than a few seconds are marked ``slow``; ``make test`` runs them all.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lhco_diffusion import config as config_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests taking more than a few seconds")


@pytest.fixture(scope="session")
def test_config(tmp_path_factory) -> config_module.Config:
    """configs/test.yaml with its cache and run directories moved into a temporary folder."""
    base = tmp_path_factory.mktemp("lhco")
    return config_module.load(
        CONFIGS / "test.yaml",
        [f"paths.cache_dir={base / 'cache'}", f"paths.run_dir={base / 'run'}"],
    )


@pytest.fixture(scope="session")
def processed_file(test_config) -> Path:
    """A prepared file of the tiny synthetic dataset (raw -> fastjet -> processed), made once."""
    from lhco_diffusion.data.sources import processed_file as prepare_once

    return prepare_once(test_config)


@pytest.fixture(scope="session")
def trained_checkpoint(test_config, processed_file, tmp_path_factory) -> Path:
    """``checkpoints/best`` of the tiny configuration trained for two short epochs, made once."""
    from lhco_diffusion.workflow import training

    run_dir = tmp_path_factory.mktemp("trained")
    config = config_module.from_dict(test_config.to_dict(), "test.yaml",
                                     [f"paths.run_dir={run_dir}", "training.steps_per_epoch=6"])
    return Path(training.train(config)["best"])
