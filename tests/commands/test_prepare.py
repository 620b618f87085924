"""``python -m lhco_diffusion.prepare`` and the cached sources: outputs, summary, bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lhco_diffusion import config as config_module
from lhco_diffusion.commands import prepare
from lhco_diffusion.data import lhco, processed, sources, synthetic
from lhco_diffusion.errors import InputError


@pytest.fixture(scope="module")
def raw_toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "toy.h5"
    synthetic.generate_raw(path, 1200, 0.2, seed=3)
    return path


def _files(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def test_synthetic_then_prepare(tmp_path, capsys):
    assert prepare.main(["--synthetic", "800", "--output", str(tmp_path), "--npart", "20", "--seed", "2",
                         "--signal-fraction", "0.25", "--quiet"]) == 0
    raw = tmp_path / sources.synthetic_name(800, 0.25, 2)
    output = tmp_path / sources.processed_name(raw, 20)
    assert _files(tmp_path) == sorted([raw.name, output.name])
    events = processed.load(output)
    processed.validate(events)
    attrs = processed.read_attrs(output)
    recorded = (attrs["npart"], attrs["n_read"], attrs["n_kept"], attrs["source"])
    assert recorded == (20, 800, len(events), str(raw))
    printed = capsys.readouterr().out
    assert f"read 800 events, kept {len(events)}" in printed and f"wrote {output}" in printed


def test_workers_and_chunking_do_not_change_the_output(raw_toy, tmp_path, capsys):
    common = ["--input", str(raw_toy), "--npart", "24", "--quiet"]
    serial = ["--output", str(tmp_path / "serial"), "--chunk-size", "1200", "--workers", "1"]
    pooled = ["--output", str(tmp_path / "pool"), "--chunk-size", "250", "--workers", "2"]
    assert prepare.main([*common, *serial]) == 0
    assert prepare.main([*common, *pooled]) == 0
    serial = processed.load(tmp_path / "serial" / "toy_P24.h5")
    pooled = processed.load(tmp_path / "pool" / "toy_P24.h5")
    for name in processed.DATASETS:
        np.testing.assert_array_equal(getattr(serial, name), getattr(pooled, name))
    summary = capsys.readouterr().out.splitlines()[-2]
    n_signal_region = int(summary.split("signal region ")[1].split(",")[0])
    assert n_signal_region == np.sum((serial.mjj >= 3300) & (serial.mjj < 3700))


def test_summary_counts_every_region(raw_toy, tmp_path):
    data = config_module.DataConfig()
    summary = sources.prepare_file(raw_toy, tmp_path / "out.h5", 10, 1.0, 1200.0, 500, 1, progress=False,
                                   data_config=data)
    assert summary["n_read"] == 1200
    assert summary["SR"] + summary["SB"] + summary["other"] == summary["n_kept"]
    assert summary["n_kept"] == processed.count(tmp_path / "out.h5")


def _run_failing(arguments, capsys) -> str:
    assert prepare.main(arguments) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message
    return message


def test_missing_input(tmp_path, capsys):
    arguments = ["--input", str(tmp_path / "absent.h5"), "--output", str(tmp_path / "out")]
    message = _run_failing(arguments, capsys)
    assert "does not exist" in message
    assert _files(tmp_path / "out") == []


@pytest.mark.parametrize("frame, key, expected", [
    (np.zeros((5, lhco.N_COLUMNS)), "events", "no pandas key 'df'"),
    (np.zeros((5, 300)), "df", "has 300 columns per event, expected 2101"),
])
def test_not_the_lhco_layout(tmp_path, capsys, frame, key, expected):
    raw = tmp_path / "raw.h5"
    pd.DataFrame(frame).to_hdf(raw, key=key, mode="w")
    assert expected in _run_failing(["--input", str(raw), "--output", str(tmp_path / "out")], capsys)
    assert _files(tmp_path / "out") == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_non_finite_values_leave_no_output(raw_toy, tmp_path, capsys, workers):
    particles, label = next(lhco.iter_chunks(raw_toy, 1200))
    particles = particles.copy()
    particles[1000, 3, 0] = np.nan
    raw = tmp_path / "raw.h5"
    lhco.write_raw(raw, particles, label)
    output = tmp_path / "out"
    message = _run_failing(["--input", str(raw), "--output", str(output), "--chunk-size", "300",
                            "--workers", workers, "--quiet"], capsys)
    assert "NaN or infinite values in events 900-1199" in message
    assert _files(output) == []


def test_bad_configuration_and_arguments(raw_toy, tmp_path, capsys):
    common = ["--input", str(raw_toy), "--output", str(tmp_path)]
    assert "unknown key 'data.nparts'" in _run_failing([*common, "--set", "data.nparts=3"], capsys)
    assert "data.npart must be of type int" in _run_failing([*common, "--set", "data.npart=many"], capsys)
    assert "--n-background" in _run_failing(["--pythia", "--output", str(tmp_path / "p.h5")], capsys)
    assert _files(tmp_path) == []


def test_command_line_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lhco_diffusion.prepare",
         "--input", str(tmp_path / "absent.h5"), "--output", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: raw file {tmp_path / 'absent.h5'} does not exist"


def test_processed_file_is_made_once_and_reused(test_config, processed_file):
    assert processed_file.parent == config_module.expand(test_config.paths.cache_dir) / "processed"
    raw = sources.raw_file(test_config)
    assert raw.name == sources.synthetic_name(3000, 0.1, 7)
    assert lhco.count_events(raw) == test_config.data.synthetic_events
    modified = processed_file.stat().st_mtime_ns
    assert sources.processed_file(test_config, progress=False) == processed_file
    assert processed_file.stat().st_mtime_ns == modified
    attrs = processed.read_attrs(processed_file)
    assert attrs["npart"] == test_config.data.npart and attrs["n_read"] == 3000


def test_configured_files_are_used_as_given(test_config, processed_file, tmp_path):
    data = test_config.data.__class__(processed=str(processed_file))
    assert sources.processed_file(test_config.replace(data=data)) == processed_file
    missing = test_config.replace(data=test_config.data.__class__(raw=str(tmp_path / "absent.h5")))
    with pytest.raises(InputError, match="data.raw file .* does not exist"):
        sources.processed_file(missing)
