"""The README's promises under bad input and interruption (issue 16): one sentence and exit 2,
nothing half-written left or used, and checkpoints that survive a kill at any moment."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from lhco_diffusion import cli, files
from lhco_diffusion.commands import classify, evaluate, likelihood, prepare, sample, train as train_command
from lhco_diffusion.workflow import generation
from lhco_diffusion.data import lhco, processed, synthetic
from lhco_diffusion.errors import InputError
from conftest import CONFIGS, ROOT
from test_classify_evaluate import fake_scores

TEST_CONFIG = str(CONFIGS / "test.yaml")


class Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing catches it."""


def _common(test_config, run_dir: Path, *overrides: str) -> list[str]:
    settings = [f"paths.cache_dir={test_config.paths.cache_dir}", f"paths.run_dir={run_dir}", *overrides]
    return ["--config", TEST_CONFIG, *(item for value in settings for item in ("--set", value))]


def _refused(code: int, capsys, *culprits) -> str:
    """Assert exit code 2 and one sentence on stderr naming every culprit; return the sentence."""
    captured = capsys.readouterr()
    assert code == 2, captured.err
    message = captured.err.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in captured.out + captured.err
    for culprit in culprits:
        assert str(culprit) in message, (culprit, message)
    return message


def _tree(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*")) if directory.exists() else []


@pytest.fixture(scope="module")
def raw_small(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "small.h5"
    synthetic.generate_raw(path, 120, 0.2, seed=5)
    return path


def _raw_copy(raw: Path, path: Path, change=None) -> Path:
    """``raw`` rewritten (fixed format) after ``change(particles, label)`` edits its arrays."""
    particles, label = next(lhco.iter_chunks(raw, 10_000))
    particles, label = particles.copy(), label.astype(np.float64)
    if change is not None:
        change(particles, label)
    frame = pd.DataFrame(np.concatenate([particles.reshape(len(label), -1), label[:, None]], axis=1))
    frame.to_hdf(path, key=lhco.KEY, mode="w", format="fixed")
    return path


def _prepare(raw: Path, output: Path, *extra: str) -> int:
    return prepare.main(["--input", str(raw), "--output", str(output), "--npart", "8", "--chunk-size", "40",
                         "--quiet", *extra])


# ------------------------------------------------------------------ bad values and impossible sizes


@pytest.mark.parametrize("option, value, culprit", [
    ("--n", "0", "sampling.n_events"), ("--batch-size", "0", "sampling.batch_size"),
    ("--steps", "0", "sampling.num_steps"), ("--seed", "-1", "sampling.seed"),
])
def test_sample_rejects_impossible_sizes_and_writes_nothing(test_config, trained_checkpoint, tmp_path, capsys,
                                                            option, value, culprit):
    output = tmp_path / "out" / "SR.h5"
    code = sample.main([*_common(test_config, tmp_path / "run"), "--checkpoint", str(trained_checkpoint),
                        "--output", str(output), "--quiet", option, value])
    _refused(code, capsys, culprit)
    assert _tree(tmp_path) == []  # not even a header-only file


@pytest.mark.parametrize("command, override, culprit", [
    (train_command, "training.learning_rate=.nan", "training.learning_rate must be a finite number"),
    (train_command, "training.learning_rate=-inf", "training.learning_rate must be a finite number"),
    (train_command, "training.epochs=0", "training.epochs must be at least 1"),
    (classify, "classifier.batch_size=-4", "classifier.batch_size must be at least 1"),
    (train_command, "data.sideband_fractions=[0.6, 0.6, -0.2]", "data.sideband_fractions"),
    (train_command, "sampling.t_star=0", "sampling.t_star must be in (0, 1]"),
])
def test_config_values_are_checked_for_finiteness_and_range(test_config, tmp_path, capsys, command, override,
                                                            culprit):
    extra = ["--mode", "supervised"] if command is classify else []
    code = command.main([*_common(test_config, tmp_path / "run", override), *extra])
    _refused(code, capsys, culprit, "test.yaml")
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("text, culprit", [
    ("", "is empty"),
    ("training: [1, 2]\n", "section 'training' must be a mapping"),
    ("- training\n", "must hold a mapping of sections"),
])
def test_broken_config_files_are_one_sentence(tmp_path, capsys, text, culprit):
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    _refused(train_command.main(["--config", str(config), "--set", f"paths.run_dir={tmp_path / 'run'}"]), capsys,
             config, culprit)
    assert _tree(tmp_path) == ["broken.yaml"]


# ------------------------------------------------------------------ raw files and prepare


@pytest.mark.parametrize("column, value, culprit", [
    (0, -30.0, "negative particle pT in event 77"),
    (1, -1.0e3, "particle at |eta| above 20 in event 77"),  # sinh(eta) would overflow
    (2, np.nan, "NaN or infinite values in events 40-79"),
    (None, 2.0, "label other than 0 or 1 in event 77"),
])
def test_prepare_rejects_corrupted_raw_values_and_leaves_no_directory(raw_small, tmp_path, capsys, column, value,
                                                                      culprit):
    def corrupt(particles, label):
        if column is None:
            label[77] = value
        else:
            particles[77, 3, column] = value

    raw = _raw_copy(raw_small, tmp_path / "raw.h5", corrupt)
    _refused(_prepare(raw, tmp_path / "out" / "nested"), capsys, raw, culprit)
    assert _tree(tmp_path) == ["raw.h5"]  # no empty output directory either


def test_prepare_refuses_an_output_it_cannot_write(raw_small, tmp_path, capsys):
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("keep me")
    _refused(_prepare(raw_small, in_the_way), capsys, in_the_way, "a file of that name is in the way")
    assert in_the_way.read_text() == "keep me"
    unwritable = Path("/sys/lhco_diffusion_test_output")  # EPERM even for root
    _refused(_prepare(raw_small, unwritable), capsys, unwritable)
    assert not unwritable.exists()


def test_prepare_overwrites_only_when_asked_and_cleans_debris_of_dead_runs(raw_small, tmp_path, capsys):
    output = tmp_path / "out"
    assert _prepare(raw_small, output) == 0
    prepared = output / "small_P8.h5"
    before = prepared.read_bytes()
    _refused(_prepare(raw_small, output), capsys, prepared, "--overwrite")
    assert prepared.read_bytes() == before
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        debris = output / f".small_P8.h5.partial-{host}-{dead.pid}"  # what a SIGKILLed prepare leaves
        running = output / f".small_P8.h5.partial-{host}-{alive.pid}"  # another prepare still writing
        for path in (debris, running):
            path.write_bytes(b"half an HDF5 file")
        assert _prepare(raw_small, output, "--overwrite") == 0
        assert sorted(p.name for p in output.iterdir()) == sorted([prepared.name, running.name])
    finally:
        alive.kill()
        alive.wait()
    assert processed.count(prepared) == len(processed.load(prepared)) > 0


# ------------------------------------------------------------------ incomplete and damaged event files


@pytest.fixture(scope="module")
def interrupted_sample(test_config, trained_checkpoint, tmp_path_factory):
    """A ``sample`` stopped by Ctrl-C after its first chunk of 100 of 300 events: (file, exit code, stderr)."""
    output = tmp_path_factory.mktemp("interrupted") / "SR.h5"
    generate, calls = generation.generate_events, []

    def interrupted_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    argv = [*_common(test_config, output.parent / "run"), "--checkpoint", str(trained_checkpoint),
            "--output", str(output), "--n", "300", "--batch-size", "100", "--quiet"]
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
        patch.setattr(generation, "generate_events", interrupted_on_the_second_chunk)
        code = sample.main(argv)
    return output, code, stderr.getvalue(), argv


def test_an_interrupted_sample_says_what_it_kept(interrupted_sample):
    output, code, stderr, _ = interrupted_sample
    assert code == cli.INTERRUPTED_EXIT_CODE
    assert "incomplete" in stderr and "--resume" in stderr and "removed" not in stderr
    attrs = processed.read_attrs(output)
    assert attrs["n_complete"] == 100 and not attrs["complete"]


@pytest.mark.parametrize("consumer", ["classify", "likelihood", "evaluate", "partial-ref"])
def test_every_consumer_refuses_an_incomplete_generated_file(interrupted_sample, test_config, trained_checkpoint,
                                                             tmp_path, capsys, consumer):
    incomplete = interrupted_sample[0]
    common = _common(test_config, tmp_path / "run")
    out = tmp_path / "out"
    if consumer == "classify":
        code = classify.main([*common, "--mode", "cwola", "--generated", str(incomplete), "--nsig", "50",
                              "--output", str(out)])
    elif consumer == "likelihood":
        code = likelihood.main([*common, "--checkpoint", str(trained_checkpoint), "--input", str(incomplete),
                                "--output", str(out / "l.h5"), "--quiet"])
    elif consumer == "evaluate":
        fake_scores(tmp_path / "scores" / "supervised", [(10, 0), (10, 1)])
        code = evaluate.main([*common, "--scores", str(tmp_path / "scores"), "--output", str(out),
                              "--generated", str(incomplete), "--reference", str(incomplete)])
    else:
        code = sample.main([*common, "--checkpoint", str(trained_checkpoint), "--mode", "partial-ref",
                            "--reference", str(incomplete), "--t-star", "0.5", "--output", str(out / "t.h5"),
                            "--quiet"])
    message = _refused(code, capsys, incomplete, "incomplete")
    assert "python -m lhco_diffusion.sample" in message and "--resume" in message
    assert not out.exists() and not (tmp_path / "run" / "scores").exists()


def test_the_resume_command_in_the_message_completes_the_file(interrupted_sample, tmp_path):
    output, _, _, argv = interrupted_sample
    completed = tmp_path / "SR.h5"
    shutil.copy(output, completed)
    argv = [completed.as_posix() if value == str(output) else value for value in argv]
    assert sample.main([*argv, "--resume"]) == 0
    assert processed.count(completed) == 300
    processed.validate(processed.load(completed))


@pytest.mark.slow
def test_a_sigkilled_sample_is_refused_until_resumed(test_config, trained_checkpoint, tmp_path):
    output = tmp_path / "SR.h5"
    argv = [*_common(test_config, tmp_path / "run"), "--checkpoint", str(trained_checkpoint),
            "--output", str(output), "--n", "300", "--batch-size", "100"]
    process = subprocess.Popen([sys.executable, "-m", "lhco_diffusion.sample", *argv], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    progress = b""
    while b"100/300" not in progress and process.poll() is None:  # the progress bar after the first chunk
        progress += process.stderr.read(1)
    process.kill()
    process.wait()
    process.stderr.close()
    with pytest.raises(InputError, match=r"incomplete: the run writing it stopped after 100 events; .*--resume"):
        processed.count(output)
    assert sample.main([*argv, "--quiet", "--resume"]) == 0
    assert processed.count(output) == 300


def test_a_writer_killed_before_its_first_chunk_leaves_a_file_to_resume(tmp_path):
    """A Slurm time limit or a kill can land while the first chunk is still being generated: the
    new file must already be readable, empty and incomplete, so that --resume starts it again."""
    output = tmp_path / "SB.h5"
    script = ("import os, signal, sys\n"
              "from lhco_diffusion.data import processed\n"
              "writer = processed.EventWriter(sys.argv[1], 8, {'seed': 3})\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    process = subprocess.run([sys.executable, "-c", script, str(output)], cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert process.returncode == -9, process.stderr
    with pytest.raises(InputError, match=r"incomplete: the run writing it stopped after 0 events"):
        processed.count(output)
    with processed.EventWriter(output, 8, resume=True) as writer:
        assert len(writer) == 0


def _processed_copy(source: Path, path: Path, n: int = 60, change=None) -> Path:
    events = processed.load(source, 0, n)
    if change is not None:
        change(events)
    with processed.EventWriter(path, events.npart) as writer:
        writer.append(events)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_likelihood_rejects_non_finite_particles(test_config, processed_file, trained_checkpoint, tmp_path, capsys,
                                                 value):
    def poison(events):
        events.particles[13, 1, 0, 1] = value

    damaged = _processed_copy(processed_file, tmp_path / "damaged.h5", change=poison)
    output = tmp_path / "likelihood.h5"
    code = likelihood.main([*_common(test_config, tmp_path / "run"), "--checkpoint", str(trained_checkpoint),
                            "--input", str(damaged), "--output", str(output), "--quiet"])
    _refused(code, capsys, damaged, "NaN or infinite")
    assert not output.exists()


def test_evaluate_checks_every_input_before_writing(tmp_path, capsys):
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0), (10, 1)])
    not_processed = tmp_path / "notes.h5"
    not_processed.write_text("not an HDF5 file")
    output = tmp_path / "evaluation"
    code = evaluate.main(["--config", TEST_CONFIG, "--scores", str(tmp_path / "scores"), "--output", str(output),
                          "--generated", str(not_processed), "--reference", str(not_processed)])
    _refused(code, capsys, not_processed)
    assert not output.exists()


def test_evaluate_overwrites_only_when_asked(tmp_path, capsys):
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0), (10, 1)])
    argv = ["--config", TEST_CONFIG, "--set", "evaluation.formats=[png]", "--scores", str(tmp_path / "scores"),
            "--output", str(tmp_path / "evaluation")]
    assert evaluate.main(argv) == 0
    summary = tmp_path / "evaluation" / "summary.json"
    before = summary.read_text()
    capsys.readouterr()
    _refused(evaluate.main(argv), capsys, summary, "--overwrite")
    assert summary.read_text() == before
    assert evaluate.main([*argv, "--overwrite"]) == 0


# ------------------------------------------------------------------ checkpoints and the training log


def _truncated_copy(checkpoint: Path, directory: Path) -> Path:
    shutil.copytree(checkpoint, directory)
    weights = next(directory.glob("weights.data-*"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    return directory


def test_sample_refuses_a_truncated_checkpoint(test_config, trained_checkpoint, tmp_path, capsys):
    damaged = _truncated_copy(trained_checkpoint, tmp_path / "best")
    output = tmp_path / "SR.h5"
    code = sample.main([*_common(test_config, tmp_path / "run"), "--checkpoint", str(damaged),
                        "--output", str(output), "--quiet"])
    _refused(code, capsys, damaged, "damaged")
    assert not output.exists()


def test_sample_names_a_checkpoint_from_another_version(test_config, trained_checkpoint, tmp_path, capsys):
    foreign = tmp_path / "best"
    shutil.copytree(trained_checkpoint, foreign)
    stored = yaml.safe_load((foreign / "config.yaml").read_text())
    stored["particle_model"]["retired_key"] = True  # a key an older or newer version had
    (foreign / "config.yaml").write_text(yaml.safe_dump(stored))
    output = tmp_path / "SR.h5"
    code = sample.main([*_common(test_config, tmp_path / "run"), "--checkpoint", str(foreign),
                        "--output", str(output), "--quiet"])
    _refused(code, capsys, foreign / "config.yaml", "particle_model.retired_key", "another version")
    assert not output.exists()


def test_train_resume_refuses_a_truncated_checkpoint(test_config, trained_checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    last = _truncated_copy(trained_checkpoint, run / "checkpoints" / "last")
    before = {path.name: path.read_bytes() for path in last.iterdir()}
    code = train_command.main([*_common(test_config, run, "training.epochs=4"), "--resume"])  # 2 epochs left
    _refused(code, capsys, last, "damaged")
    assert {path.name: path.read_bytes() for path in last.iterdir()} == before
    assert [path.name for path in run.iterdir()] == ["checkpoints"]  # no log, no TensorBoard events


def test_train_resume_never_restarts_a_run_that_has_a_log(test_config, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    log = run / "training_log.csv"
    log.write_text("epoch,loss,val_loss\n0,2.5,2.4\n1,2.2,2.3\n")
    _refused(train_command.main([*_common(test_config, run), "--resume"]), capsys, log, "2 epoch(s)")
    _refused(train_command.main(_common(test_config, run)), capsys, "--resume")
    assert log.read_text() == "epoch,loss,val_loss\n0,2.5,2.4\n1,2.2,2.3\n"


def _log_epochs(run: Path) -> list[str]:
    lines = (run / "training_log.csv").read_text().splitlines()
    assert all("nan" not in line.lower() for line in lines)
    return [line.split(",")[0] for line in lines[1:]]


def _state(run: Path) -> int:
    return json.loads((run / "checkpoints" / "last" / "state.json").read_text())["epoch"]


@pytest.mark.slow
@pytest.mark.parametrize("step", ["new into place", "delete the backup"])
def test_a_kill_during_the_checkpoint_swap_loses_no_epoch(test_config, processed_file, tmp_path, monkeypatch,
                                                          capsys, step):
    run = tmp_path / "run"
    common = _common(test_config, run, "training.steps_per_epoch=2", "data.pad_to_longest=false",
                     "training.epochs=3")
    assert train_command.main([*common, "--set", "training.epochs=1"]) == 0
    replace, rmtree = os.replace, files.shutil.rmtree
    swaps = []

    def dies_moving_the_new_last_into_place(source, target):
        if Path(target).name == "last" and Path(source).name.startswith(".last.partial"):
            swaps.append(target)
            raise Killed
        replace(source, target)

    def dies_deleting_the_backup(path, *args, **kwargs):
        if Path(path).name == ".last.previous":
            raise Killed
        rmtree(path, *args, **kwargs)

    if step == "new into place":
        monkeypatch.setattr(files.os, "replace", dies_moving_the_new_last_into_place)
    else:
        monkeypatch.setattr(files.shutil, "rmtree", dies_deleting_the_backup)
    with pytest.raises(Killed):
        train_command.main([*common, "--resume"])  # dies while writing epoch 2's checkpoint
    monkeypatch.undo()
    backup = run / "checkpoints" / ".last.previous"
    assert backup.is_dir() and (run / "checkpoints" / "last").exists() == (step == "delete the backup")
    capsys.readouterr()
    assert train_command.main([*common, "--resume"]) == 0
    resumed_after = 1 if step == "new into place" else 2
    assert f"after epoch {resumed_after} of 3" in capsys.readouterr().out
    assert _state(run) == 3 and not backup.exists()
    assert _log_epochs(run) == ["0", "1", "2"]


@pytest.mark.slow
def test_a_diverged_epoch_leaves_no_log_row_and_resume_adds_each_epoch_once(test_config, processed_file, tmp_path,
                                                                           capsys):
    run = tmp_path / "run"
    common = _common(test_config, run, "training.steps_per_epoch=2", "data.pad_to_longest=false")
    assert train_command.main([*common, "--set", "training.epochs=1"]) == 0
    diverging = ["--set", "training.epochs=3", "--set", "training.learning_rate=1e30", "--set",
                 "training.clip_norm=1e30", "--resume"]
    assert train_command.main([*common, *diverging]) == 3
    assert _log_epochs(run) == ["0"] and _state(run) == 1
    assert train_command.main([*common, "--set", "training.epochs=2", "--resume"]) == 0
    assert _log_epochs(run) == ["0", "1"] and _state(run) == 2


# ------------------------------------------------------------------ fuzzing the two readers


def _outcome(code: int, capsys, output: Path, check) -> str:
    """'ok' (exit 0, output valid) or 'refused' (exit 2, one sentence, no output)."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    if code == 0:
        check(output)
        return "ok"
    assert code == 2, captured.err
    message = re.split(r"[\r\n]", captured.err.strip())[-1]  # after any progress bar
    assert message.startswith("error: ") and captured.err.count("error: ") == 1, captured.err
    assert not output.exists()
    return "refused"


def _mutations(rng: np.random.Generator, n_cases: int):
    """(kind, fraction, value) of each fuzz case: a truncation at a byte fraction, or a value."""
    values = [np.nan, np.inf, -np.inf, -1.0, -1e3]
    for _ in range(n_cases):
        if rng.random() < 0.3:
            yield "truncate", rng.random(), None
        else:
            yield "value", rng.random(), values[rng.integers(len(values))]


def test_fuzzed_raw_files_give_a_valid_file_or_one_sentence(raw_small, tmp_path, capsys):
    rng = np.random.default_rng(16)
    outcomes = []
    start = time.monotonic()
    for case, (kind, fraction, value) in enumerate(_mutations(rng, 40)):
        raw = tmp_path / f"raw{case}.h5"
        if kind == "truncate":
            data = _raw_copy(raw_small, raw).read_bytes()
            raw.write_bytes(data[: int(fraction * len(data))])
        else:
            row, column = rng.integers(120), rng.integers(lhco.N_COLUMNS)

            def change(particles, label):
                if column == lhco.N_COLUMNS - 1:
                    label[row] = value
                else:
                    particles.reshape(len(label), -1)[row, column] = value

            _raw_copy(raw_small, raw, change)
        output = tmp_path / f"out{case}"
        outcomes.append(_outcome(_prepare(raw, output), capsys, output,
                                 lambda out: processed.validate(processed.load(next(out.iterdir())))))
    print(f"raw fuzz: {len(outcomes)} cases, {outcomes.count('ok')} valid files, {outcomes.count('refused')} "
          f"refused, {time.monotonic() - start:.1f} s")
    assert outcomes.count("ok") and outcomes.count("refused")


def test_fuzzed_processed_files_give_a_valid_file_or_one_sentence(processed_file, tmp_path, capsys):
    """``evaluate --generated FUZZED --reference GOOD``: the processed reader behind every command."""
    rng = np.random.default_rng(61)
    source = _processed_copy(processed_file, tmp_path / "reference.h5", n=400)
    fake_scores(tmp_path / "scores" / "supervised", [(10, 0), (10, 1)])
    common = ["--config", TEST_CONFIG, "--set", "evaluation.formats=[png]", "--scores", str(tmp_path / "scores"),
              "--reference", str(source)]
    outcomes = []
    start = time.monotonic()
    for case, (kind, fraction, value) in enumerate(_mutations(rng, 30)):
        generated = tmp_path / f"generated{case}.h5"
        shutil.copy(source, generated)
        if kind == "truncate":
            data = generated.read_bytes()
            generated.write_bytes(data[: int(fraction * len(data))])
        else:
            with h5py.File(generated, "a") as file:
                name = processed.DATASETS[rng.integers(len(processed.DATASETS))]
                values = file[name][:]
                flat = values.reshape(len(values), -1)  # a view: one event per row
                flat[rng.integers(len(values)), rng.integers(flat.shape[1])] = -1 if name == "label" else value
                file[name][...] = values
        output = tmp_path / f"evaluation{case}"
        code = evaluate.main([*common, "--generated", str(generated), "--output", str(output)])
        outcomes.append(_outcome(code, capsys, output,
                                 lambda out: json.loads((out / "summary.json").read_text())["features"]))
    print(f"processed fuzz: {len(outcomes)} cases, {outcomes.count('ok')} valid outputs, "
          f"{outcomes.count('refused')} refused, {time.monotonic() - start:.1f} s")
    assert outcomes.count("ok") and outcomes.count("refused")


# ------------------------------------------------------------------ nothing outside the output


def test_a_command_leaves_nothing_outside_its_output(tmp_path):
    home, work, temporary = (tmp_path / name for name in ("home", "work", "tmp"))
    for directory in (home, work, temporary):
        directory.mkdir()
    environment = {**os.environ, "HOME": str(home), "TMPDIR": str(temporary), "PYTHONPATH": str(ROOT),
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("MPLCONFIGDIR", "KERAS_HOME", "XDG_CACHE_HOME"):
        environment.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "lhco_diffusion.prepare", "--synthetic", "200", "--npart", "8",
                             "--output", "out", "--quiet"], cwd=work, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [path.name for path in work.iterdir()] == ["out"]
    assert _tree(temporary) == []
    assert all(path.startswith((".keras", ".cache/matplotlib", ".config/matplotlib")) for path in _tree(home))


def test_refuse_existing_is_the_one_overwrite_policy(tmp_path):
    path = tmp_path / "output.h5"
    files.refuse_existing(path, overwrite=False)
    path.write_text("x")
    with pytest.raises(InputError, match="pass --overwrite"):
        files.refuse_existing(path, overwrite=False)
    files.refuse_existing(path, overwrite=True)
