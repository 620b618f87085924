"""The batch scripts in jobs/: syntax, dry runs, the classify array mapping, argument errors.

The scripts run in dry-run mode, or for real with fake ``srun``/``scontrol``/``module`` on PATH
that only record their calls, so the tests need neither Slurm nor a GPU and take seconds.
"""
from __future__ import annotations

import concurrent.futures
import importlib.util
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PERLMUTTER = ROOT / "jobs" / "perlmutter"
LOCAL = ROOT / "jobs" / "local" / "horovodrun.sh"
SCRIPTS = [PERLMUTTER / f"{step}.sbatch" for step in ("train", "sample", "classify", "evaluate")] + [LOCAL]
PAPER_CONFIG = "configs/lhco_279.yaml"

# The classify array of the paper configs (issue and jobs/README.md): 2 modes x 9 injections x 10 seeds.
MODES = ("cwola", "idealized")
INJECTIONS = (500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10000)
SEEDS = tuple(range(10))
# Entry points written concurrently with these scripts: a checkout may not have them yet.
WRITTEN_ELSEWHERE = {"lhco_diffusion.sample", "lhco_diffusion.pipeline"}

FAKE_COMMAND = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_CALLS"
echo "fake $(basename "$0") ran: $*"
if [ -n "$FAKE_WAIT_FOR" ]; then
    touch "$FAKE_WAIT_FOR.started"
    while [ ! -e "$FAKE_WAIT_FOR" ]; do sleep 0.05; done
fi
case "$(basename "$0")" in srun|horovodrun) exit "${FAKE_STEP_STATUS:-0}" ;; esac
"""


@pytest.fixture
def jobs_env(tmp_path) -> dict:
    """Environment for the scripts: no Slurm variables, fakes for every launcher and for module
    (recording calls in FAKE_CALLS; srun and horovodrun exit with FAKE_STEP_STATUS), ``python``
    and ``python3`` meaning the interpreter running the tests, run_dir under tmp_path."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("srun", "scontrol", "horovodrun", "module", "sbatch"):
        (fake_bin / name).write_text(FAKE_COMMAND)
    for name in ("python", "python3"):
        (fake_bin / name).write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    for path in fake_bin.iterdir():
        path.chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "LHCO_", "FAKE_")) and key not in ("DRY_RUN", "NP")}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env['PATH']}", LHCO_VENV="", FAKE_CALLS=str(tmp_path / "calls"),
               RUN_DIR_FOR_TEST=str(tmp_path / "run"))
    return env


def run(script: Path, *args: str, env: dict, dry_run: bool = True, **extra_env: str):
    """Run ``script`` with ``args`` and paths.run_dir moved to the test's temporary directory."""
    arguments = ["--dry-run"] if dry_run else []
    arguments += [*args, "--set", f"paths.run_dir={env['RUN_DIR_FOR_TEST']}"]
    return subprocess.run(["bash", str(script), *arguments], cwd=ROOT, env={**env, **extra_env},
                          capture_output=True, text=True, timeout=60)


def python_commands(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(module, {option: value}) of every ``python -m lhco_diffusion.X ...`` a dry run printed."""
    commands = []
    for line in stdout.splitlines():
        if not line.startswith("[dry-run]") or " python -m " not in line:
            continue
        command, _, log = line.partition(" 2>&1 | tee -a ")
        assert log, f"the step's output is not logged: {line}"
        words = shlex.split(command)
        words = words[words.index("python") + 1:]
        assert words[0] == "-m", line
        options = {}
        for word, following in itertools.pairwise(words[2:] + [""]):
            if word.startswith("--"):
                options[word] = "" if following.startswith("--") else following
        commands.append((words[1], options))
    return commands


def calls(env: dict) -> list[str]:
    path = Path(env["FAKE_CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def sbatch_options(script: Path) -> list[str]:
    return [line.removeprefix("#SBATCH").strip() for line in script.read_text().splitlines()
            if line.startswith("#SBATCH")]


@pytest.mark.parametrize("path", SCRIPTS + [PERLMUTTER / "common.sh"], ids=lambda path: path.name)
def test_shell_syntax(path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("how", ["flag", "environment"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_dry_run_names_existing_configs_and_modules(script, how, jobs_env):
    args, extra = ([], {"DRY_RUN": "1"}) if how == "environment" else (["--dry-run"], {})
    result = run(script, *args, PAPER_CONFIG, env=jobs_env, dry_run=False, NP="2", **extra)
    assert result.returncode == 0, result.stderr
    commands = python_commands(result.stdout)
    assert commands, result.stdout
    missing = []
    for module, options in commands:
        assert module.startswith("lhco_diffusion."), module
        assert (ROOT / options["--config"]).is_file(), options
        if importlib.util.find_spec(module) is None:
            missing.append(module)
    launcher = "horovodrun" if script == LOCAL else "srun"
    assert all(line.startswith(f"[dry-run] {launcher} ") for line in result.stdout.splitlines()
               if " python -m " in line), result.stdout
    assert calls(jobs_env) == [], "a dry run executed commands"
    assert not Path(jobs_env["RUN_DIR_FOR_TEST"]).exists(), "a dry run created the run directory"
    assert set(missing) <= WRITTEN_ELSEWHERE, f"no such entry point: {missing}"
    if missing:
        pytest.skip(f"{', '.join(missing)} not in this checkout yet")


def test_dry_run_prints_the_environment_it_would_load(jobs_env):
    env = {key: value for key, value in jobs_env.items() if key != "LHCO_VENV"}
    result = run(PERLMUTTER / "train.sbatch", PAPER_CONFIG, env=env)
    assert result.returncode == 0, result.stderr
    assert "[dry-run] module load python cudatoolkit cudnn nccl" in result.stdout
    assert f"[dry-run] source {ROOT / '.venv' / 'bin' / 'activate'}" in result.stdout
    assert calls(jobs_env) == []


def test_train_runs_one_resumable_task_per_gpu_on_4_nodes(jobs_env):
    options = sbatch_options(PERLMUTTER / "train.sbatch")
    for expected in ("-N 4", "--ntasks-per-node=4", "--gpus-per-node=4", "-C gpu", "-q regular", "--requeue"):
        assert expected in options
    result = run(PERLMUTTER / "train.sbatch", PAPER_CONFIG, env=jobs_env)
    [line] = [line for line in result.stdout.splitlines() if " python -m " in line]
    assert line.startswith("[dry-run] srun --gpu-bind=none python -m lhco_diffusion.train ")
    assert "--resume" in python_commands(result.stdout)[0][1]
    assert f"tee -a {jobs_env['RUN_DIR_FOR_TEST']}/logs/train-local-" in line


def test_local_horovodrun_uses_np_workers(jobs_env):
    result = run(LOCAL, "configs/default.yaml", env=jobs_env, NP="3")
    assert result.returncode == 0, result.stderr
    assert "[dry-run] horovodrun -np 3 -H localhost:3 python -m lhco_diffusion.train " in result.stdout


@pytest.mark.parametrize("config, args, n", [(PAPER_CONFIG, [], "200000"), ("configs/test.yaml", [], "200"),
                                             (PAPER_CONFIG, ["--n", "7"], "7")])
def test_sample_takes_n_from_config_unless_given(config, args, n, jobs_env):
    result = run(PERLMUTTER / "sample.sbatch", config, *args, env=jobs_env)
    [(module, options)] = python_commands(result.stdout)
    assert module == "lhco_diffusion.sample"
    assert options["--n"] == n
    assert options["--output"] == f"{jobs_env['RUN_DIR_FOR_TEST']}/samples/SR.h5"
    assert options["--checkpoint"] == f"{jobs_env['RUN_DIR_FOR_TEST']}/checkpoints/best"


def _task(options: dict) -> tuple[str, int, int]:
    return options["--mode"], int(options["--nsig"]), int(options["--seed"])


def classify_task(index: int, env: dict) -> tuple[str, int, int]:
    """(mode, nsig, seed) of the dry run of array task ``index`` of the paper configuration."""
    result = run(PERLMUTTER / "classify.sbatch", PAPER_CONFIG, env=env, SLURM_ARRAY_TASK_ID=str(index))
    assert result.returncode == 0, result.stderr
    [(module, options)] = python_commands(result.stdout)
    assert module == "lhco_diffusion.classify"
    assert options["--output"] == f"{env['RUN_DIR_FOR_TEST']}/scores/{options['--mode']}"
    assert ("--generated" in options) == (options["--mode"] == "cwola")
    assert f"task {index}: mode={options['--mode']} " in result.stdout
    return _task(options)


def assert_documented_array(tasks: list[tuple[str, int, int]]) -> None:
    """Exactly 2 modes x 9 injections x 10 seeds, at index (mode_i * 9 + nsig_i) * 10 + seed."""
    assert sorted(tasks) == sorted(itertools.product(MODES, INJECTIONS, SEEDS))
    for index, (mode, nsig, seed) in enumerate(tasks):
        assert index == (MODES.index(mode) * len(INJECTIONS) + INJECTIONS.index(nsig)) * len(SEEDS) + seed


def test_classify_array_is_the_documented_grid(jobs_env):
    assert "--array=0-179" in sbatch_options(PERLMUTTER / "classify.sbatch")
    printed = run(PERLMUTTER / "classify.sbatch", "--print-array", PAPER_CONFIG, env=jobs_env, dry_run=False)
    assert printed.stdout.strip() == "0-179"
    # a dry run without an index lists the whole array, in index order
    listing = run(PERLMUTTER / "classify.sbatch", PAPER_CONFIG, env=jobs_env)
    tasks = [_task(options) for _, options in python_commands(listing.stdout)]
    assert_documented_array(tasks)
    for index in (0, 9, 10, 89, 90, 95, 179):  # the edges; every index: the slow test below
        assert classify_task(index, jobs_env) == tasks[index]


@pytest.mark.slow
def test_every_array_index_runs_its_documented_task(jobs_env):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        tasks = list(pool.map(lambda index: classify_task(index, jobs_env), range(180)))
    assert_documented_array(tasks)


def test_readme_array_table_matches_the_script(jobs_env):
    rows = re.findall(r"^\|\s*(\d+)[-–](\d+)\s*\|\s*(\w[\w-]*)\s*\|\s*(\d+)\s*\|", (ROOT / "jobs" / "README.md")
                      .read_text(), flags=re.MULTILINE)
    assert len(rows) == len(MODES) * len(INJECTIONS)
    listing = run(PERLMUTTER / "classify.sbatch", PAPER_CONFIG, env=jobs_env)
    tasks = [_task(options) for _, options in python_commands(listing.stdout)]
    for first, last, mode, nsig in rows:
        assert tasks[int(first):int(last) + 1] == [(mode, int(nsig), seed) for seed in SEEDS]


def test_classify_skips_tasks_whose_scores_exist(jobs_env):
    scores = Path(jobs_env["RUN_DIR_FOR_TEST"]) / "scores" / "idealized"
    scores.mkdir(parents=True)
    (scores / "nsig500_seed5.h5").touch()
    result = run(PERLMUTTER / "classify.sbatch", PAPER_CONFIG, env=jobs_env, SLURM_ARRAY_TASK_ID="95")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout and python_commands(result.stdout) == []


BAD_ARGUMENTS = [(script, []) for script in SCRIPTS] + [
    (PERLMUTTER / "train.sbatch", ["configs/missing.yaml"]),
    (PERLMUTTER / "train.sbatch", [PAPER_CONFIG, "--bogus"]),
    (PERLMUTTER / "train.sbatch", [PAPER_CONFIG, "configs/default.yaml"]),
    (PERLMUTTER / "train.sbatch", [PAPER_CONFIG, "--set"]),
    (PERLMUTTER / "sample.sbatch", [PAPER_CONFIG, "--region", "CR"]),
    (PERLMUTTER / "sample.sbatch", [PAPER_CONFIG, "--n", "many"]),
    (PERLMUTTER / "sample.sbatch", [PAPER_CONFIG, "--n"]),
    (PERLMUTTER / "classify.sbatch", [PAPER_CONFIG, "--index", "x"]),
    (PERLMUTTER / "classify.sbatch", [PAPER_CONFIG, "--index", "180"]),
    (PERLMUTTER / "evaluate.sbatch", [PAPER_CONFIG, "--generated", "SR.h5"]),
    (LOCAL, ["configs/default.yaml", "extra.yaml"]),
]


@pytest.mark.parametrize("script, args", BAD_ARGUMENTS,
                         ids=lambda value: value.name if isinstance(value, Path) else " ".join(value))
def test_bad_arguments_exit_2_with_usage(script, args, jobs_env):
    result = subprocess.run(["bash", str(script), "--dry-run", *args], cwd=ROOT, env=jobs_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: " in result.stderr and f"usage: {script.name}" in result.stderr
    assert calls(jobs_env) == []


def test_classify_needs_an_index_outside_a_dry_run(jobs_env):
    result = run(PERLMUTTER / "classify.sbatch", PAPER_CONFIG, env=jobs_env, dry_run=False, LHCO_MODULES="")
    assert result.returncode == 2 and "usage: classify.sbatch" in result.stderr
    assert calls(jobs_env) == []


def test_bad_config_value_is_one_sentence_and_exit_2(jobs_env):
    result = run(PERLMUTTER / "train.sbatch", PAPER_CONFIG, "--set", "trainng.epochs=1", env=jobs_env)
    assert result.returncode == 2
    assert "unknown section 'trainng'" in result.stderr and "Traceback" not in result.stderr


def test_real_run_logs_next_to_results_and_keeps_the_exit_status(jobs_env):
    result = run(PERLMUTTER / "train.sbatch", PAPER_CONFIG, env=jobs_env, dry_run=False,
                 SLURM_JOB_ID="42", FAKE_STEP_STATUS="3")
    assert result.returncode == 3, result.stdout + result.stderr
    modules, step = calls(jobs_env)
    assert modules == "module load python cudatoolkit cudnn nccl"
    assert step.startswith("srun --gpu-bind=none python -m lhco_diffusion.train --config configs/lhco_279.yaml")
    log = (Path(jobs_env["RUN_DIR_FOR_TEST"]) / "logs" / "train-42.log").read_text()
    assert "fake srun ran: --gpu-bind=none python -m lhco_diffusion.train" in log


def test_usr1_before_the_time_limit_requeues_the_job(jobs_env, tmp_path):
    release = tmp_path / "release"
    env = {**jobs_env, "LHCO_MODULES": "", "SLURM_JOB_ID": "42", "FAKE_WAIT_FOR": str(release)}
    arguments = [PAPER_CONFIG, "--set", f"paths.run_dir={jobs_env['RUN_DIR_FOR_TEST']}"]
    process = subprocess.Popen(["bash", str(PERLMUTTER / "train.sbatch"), *arguments], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{release}.started").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGUSR1)
        while not any(call.startswith("scontrol") for call in calls(jobs_env)):
            assert time.monotonic() < deadline, "no requeue after USR1"
            time.sleep(0.05)
        assert process.poll() is None, "the step was abandoned instead of waited for"
        release.touch()
        stdout, stderr = process.communicate(timeout=30)
    finally:
        release.touch()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stdout + stderr
    assert "scontrol requeue 42" in calls(jobs_env)
    assert (Path(jobs_env["RUN_DIR_FOR_TEST"]) / "logs" / "train-42.log").is_file()


def test_build_variables_are_not_exported_at_run_time(jobs_env):
    result = run(PERLMUTTER / "train.sbatch", PAPER_CONFIG, env=jobs_env)
    assert result.returncode == 0, result.stderr
    assert "HOROVOD_GPU_OPERATIONS" not in result.stdout  # a build setting (make install-gpu)
    assert "MPICH_GPU_SUPPORT_ENABLED=0" in result.stdout


@pytest.mark.parametrize("script", [PERLMUTTER / "train.sbatch", LOCAL], ids=lambda path: path.name)
def test_rescale_workers_reaches_the_training(script, jobs_env):
    plain, rescaled = (run(script, *args, PAPER_CONFIG, env=jobs_env, NP="2") for args in ([], ["--rescale-workers"]))
    assert "--rescale-workers" not in python_commands(plain.stdout)[0][1]
    assert "--rescale-workers" in python_commands(rescaled.stdout)[0][1]


# ---------------------------------------------------------------------------------------------
# Every sbatch / horovodrun / jobs/... command of README.md and jobs/README.md, dry-run.

DOCUMENTS = (ROOT / "README.md", ROOT / "jobs" / "README.md")
# Words the documents use for values the reader picks, and what the test picks.
PLACEHOLDERS = {"CONFIG": PAPER_CONFIG, "NP": "2", "mXXXX": "m0000"}
_ASSIGNMENTS = r"(?:\w+=\S*\s+)*"  # leading NAME=VALUE environment assignments
_COMMAND = re.compile(rf"^(?:\w+=\$\()?{_ASSIGNMENTS}(sbatch|horovodrun|jobs/\S+)\s+\S")

# A stand-in sbatch: runs the script in dry-run mode with the given arguments, once per index of
# an explicit --array list (a range: once, and the dry run lists the whole array), records each
# run in FAKE_SBATCH_LOG as JSON, prints a job id like sbatch (--parsable: the id alone).
FAKE_SBATCH = """#!{python}
import json, os, subprocess, sys
WITH_VALUE = {{"-A", "--account", "-N", "--nodes", "-t", "--time", "-d", "--dependency", "--array", "-a",
              "-q", "--qos", "-C", "--constraint", "-n", "--ntasks"}}
args, options = sys.argv[1:], {{}}
while args and args[0].startswith("-"):
    name, equals, value = args.pop(0).partition("=")
    options[name] = value if equals else (args.pop(0) if name in WITH_VALUE else "")
script, arguments = args[0], args[1:]
array = options.get("--array", options.get("-a", "")).split("%")[0]
indices = array.split(",") if "," in array or array.isdigit() else [None]
status = 0
for index in indices:
    env = dict(os.environ, DRY_RUN="1")
    if index is not None:
        env["SLURM_ARRAY_TASK_ID"] = index
    result = subprocess.run(["bash", script, *arguments], env=env, capture_output=True, text=True)
    with open(os.environ["FAKE_SBATCH_LOG"], "a") as log:
        log.write(json.dumps({{"script": script, "options": options, "index": index, "array": array,
                               "returncode": result.returncode, "stdout": result.stdout,
                               "stderr": result.stderr}}) + "\\n")
    status = status or result.returncode
print("4242" if "--parsable" in options else "Submitted batch job 4242")
sys.exit(status)
"""


def documented_commands(path: Path) -> list[tuple[str, str]]:
    """(preamble, command) of every line of ``path`` (a fenced block's line, continuations joined, or
    an inline code span) that runs sbatch, horovodrun or a jobs/ script. The preamble holds the
    plain variable assignments above it in its block (``config=configs/lhco_279.yaml``)."""
    text = path.read_text()
    commands = []
    for block in re.findall(r"^```\w*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        preamble = []
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if re.fullmatch(r"\w+=[^\s$(]+", line):
                preamble.append(line)
            elif _COMMAND.match(line):
                commands.append(("\n".join(preamble), line))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if _COMMAND.match(span):
            commands.append(("", span))
    return [(preamble, re.sub(rf"\b({'|'.join(PLACEHOLDERS)})\b(?!=)", lambda m: PLACEHOLDERS[m.group(1)], command))
            for preamble, command in commands]


DOCUMENTED = [(path.relative_to(ROOT), *command) for path in DOCUMENTS for command in documented_commands(path)]


def test_the_documents_hold_the_commands_of_the_issue():
    commands = [command for _, _, command in DOCUMENTED]
    assert "sbatch jobs/perlmutter/classify.sbatch configs/lhco_279.yaml" in commands
    assert any(command.startswith("sbatch jobs/perlmutter/classify.sbatch --generated ") for command in commands)
    assert any(command.startswith("horovodrun -np 2 -H localhost:2 python -m lhco_diffusion.train")
               for command in commands)
    assert "horovodrun --check-build" in commands
    assert len(DOCUMENTED) >= 20, DOCUMENTED


def _step(script: str) -> str:
    """The entry point a job script runs: <step>.sbatch runs <step>; horovodrun.sh trains."""
    return "train" if Path(script).name == LOCAL.name else Path(script).name.split(".")[0]


def _assert_dry_run(stdout: str, launcher: str, step: str) -> None:
    """The dry run printed only ``launcher ... python -m lhco_diffusion.<step>`` commands, and some."""
    lines = [line for line in stdout.splitlines() if " python -m " in line]
    assert lines, stdout
    for line in lines:
        assert line.startswith(f"[dry-run] {launcher} "), line
    assert {module for module, _ in python_commands(stdout)} == {f"lhco_diffusion.{step}"}, stdout


@pytest.mark.parametrize("document, preamble, command", DOCUMENTED, ids=[command for _, _, command in DOCUMENTED])
def test_documented_command_dry_runs(document, preamble, command, jobs_env, tmp_path):
    sys.path.insert(0, str(ROOT / "jobs"))
    try:
        import check_horovod_build
    finally:
        sys.path.pop(0)
    words = shlex.split(command)
    if words[0] == "horovodrun" and "python" not in words:
        assert tuple(words) == check_horovod_build.COMMAND, f"{document}: {command}"
        return
    pscratch = tmp_path / "pscratch"
    env = {key: value for key, value in jobs_env.items() if key != "SCRATCH"}
    env.update(PSCRATCH=str(pscratch), FAKE_SBATCH_LOG=str(tmp_path / "sbatch.jsonl"), DRY_RUN="1")
    (tmp_path / "bin" / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    if words[0] == "horovodrun":  # what jobs/local/horovodrun.sh runs for the same NP and config
        np_workers, config = words[words.index("-np") + 1], words[words.index("--config") + 1]
        result = subprocess.run(["bash", str(LOCAL), "--dry-run", config], cwd=ROOT, env={**env, "NP": np_workers},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        [printed] = [line for line in result.stdout.splitlines() if " python -m " in line]
        assert shlex.split(printed.partition(" 2>&1 | tee -a ")[0])[1:] == words, f"{document}: {command}"
        return
    checkout = tmp_path / "checkout"  # the repository without its runs/, which `make demo` fills
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != "runs":
            (checkout / entry.name).symlink_to(entry)
    result = subprocess.run(["bash", "-c", f"set -e\n{preamble}\n{command}"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{document}: {command}\n{result.stdout}{result.stderr}"
    assert calls(env) == [], "a dry run executed commands"
    assert not pscratch.exists(), "a dry run wrote to scratch"
    if words[0] == "sbatch" or "=$(sbatch" in command:
        records = [json.loads(line) for line in Path(env["FAKE_SBATCH_LOG"]).read_text().splitlines()]
        assert records, command
        for record in records:
            assert record["returncode"] == 0, f"{document}: {command}\n{record['stderr']}"
            _assert_dry_run(record["stdout"], "srun", _step(record["script"]))
            if "-" in record["array"]:  # a range: the dry run listed every task of it
                first, last = map(int, record["array"].split("-"))
                assert len(python_commands(record["stdout"])) == last - first + 1, record["stdout"]
            if "configs/lhco_279.yaml" in record["stdout"]:  # the cluster config writes to scratch
                assert f"tee -a {pscratch}/runs/lhco_279/logs/" in record["stdout"]
    else:  # a jobs/ script run directly
        script = next(word for word in words if word.startswith("jobs/"))
        _assert_dry_run(result.stdout, "horovodrun" if script.startswith("jobs/local/") else "srun", _step(script))


# ---------------------------------------------------------------------------------------------
# make install-gpu: its commands (make's dry run) and the check of `horovodrun --check-build`.

def _listing(controllers: str, operations: str, frameworks: str = "X  ") -> str:
    """A ``horovodrun --check-build`` listing as Horovod 0.28.1 prints it; each argument ticks
    ('X') or not (' ') the entries of its section in Horovod's order."""
    names = {"Available Frameworks": ("TensorFlow", "PyTorch", "MXNet"),
             "Available Controllers": ("MPI", "Gloo"),
             "Available Tensor Operations": ("NCCL", "DDL", "CCL", "MPI", "Gloo")}
    lines = ["Horovod v0.28.1:", ""]
    for (section, entries), ticks in zip(names.items(), (frameworks, controllers, operations)):
        lines += [f"{section}:", *(f"    [{tick}] {entry}" for tick, entry in zip(ticks, entries)), ""]
    return "\n".join(lines)


TF_LOG = ("2026-11-29 23:25:37.240111: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.\n"
          "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n")
CHECK_BUILD_SAMPLES = {
    # this machine's `make install` venv (captured): Gloo only; PyTorch is ticked there too
    "cpu-gloo": (TF_LOG + _listing(" X", "    X", "XX "), ["MPI (controllers)", "NCCL (tensor operations)"]),
    # Perlmutter after `make install-gpu` (as NERSC users report it): what the jobs need
    "gpu-mpi-nccl": (TF_LOG + _listing("XX", "X  XX"), []),
    # HOROVOD_WITH_MPI=1 but HOROVOD_GPU_OPERATIONS unset at build time
    "mpi-no-nccl": (_listing("XX", "   XX"), ["NCCL (tensor operations)"]),
    # HOROVOD_GPU_OPERATIONS=NCCL but HOROVOD_WITHOUT_MPI=1 kept (the old Makefile's GPU build)
    "nccl-no-mpi": (_listing(" X", "X   X"), ["MPI (controllers)"]),
    # MPI ticked as a tensor operation only: the controller is what srun needs
    "mpi-operation-only": (_listing(" X", "X  XX"), ["MPI (controllers)"]),
    # built without TensorFlow (installed before it)
    "no-tensorflow": (_listing("XX", "X  XX", " X "), ["TensorFlow (frameworks)"]),
    "empty": ("", ["TensorFlow (frameworks)", "MPI (controllers)", "NCCL (tensor operations)"]),
}
CHECKER = ROOT / "jobs" / "check_horovod_build.py"


@pytest.mark.parametrize("sample", CHECK_BUILD_SAMPLES)
def test_check_build_gate(sample, tmp_path):
    listing, absent = CHECK_BUILD_SAMPLES[sample]
    (tmp_path / "check-build.txt").write_text(listing)
    result = subprocess.run([sys.executable, str(CHECKER), str(tmp_path / "check-build.txt")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == (1 if absent else 0), result.stdout + result.stderr
    if absent:
        assert f"error: Horovod lacks {', '.join(absent)}; " in result.stderr
        assert "make install-gpu" in result.stderr
    else:
        assert "TensorFlow, MPI and NCCL ticked" in result.stdout


def make_dry_run(target: str, tmp_path: Path, **env: str) -> list[str]:
    """The recipe lines `make -n TARGET` prints for a venv under tmp_path."""
    environment = {key: value for key, value in os.environ.items() if key not in ("CRAYPE_VERSION", "MAKEFLAGS")}
    result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**environment, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.replace("\\\n", " ").splitlines()


def _index(lines: list[str], *fragments: str) -> int:
    [index] = [i for i, line in enumerate(lines) if all(fragment in line for fragment in fragments)]
    return index


@pytest.mark.parametrize("cray", [False, True])
def test_install_gpu_rebuilds_horovod_with_mpi_and_nccl_and_checks_it(cray, tmp_path):
    lines = make_dry_run("install-gpu", tmp_path, **({"CRAYPE_VERSION": "2.7.30"} if cray else {}))
    uninstall = _index(lines, "pip uninstall --yes horovod tensorflow-cpu")
    tensorflow = _index(lines, 'pip install "tensorflow[and-cuda]==2.15.1"')
    build = _index(lines, 'pip install --no-build-isolation --no-cache-dir "horovod==0.28.1"')
    check = _index(lines, "jobs/check_horovod_build.py")
    stamp = _index(lines, "touch", ".installed")
    assert uninstall < tensorflow < build < check < stamp
    words = shlex.split(lines[build])
    assert words[:3] == ["env", "-u", "HOROVOD_WITHOUT_MPI"]
    assert {"HOROVOD_WITH_MPI=1", "HOROVOD_GPU_OPERATIONS=NCCL"} <= set(words)
    assert ({"CC=cc", "CXX=CC"} <= set(words)) == cray


def test_cpu_install_is_unchanged_and_a_gpu_venv_stays_gpu(tmp_path):
    lines = make_dry_run("install", tmp_path)
    assert any('pip install "tensorflow-cpu==2.15.1"' in line for line in lines)
    assert not any("uninstall" in line or "HOROVOD_WITH_MPI" in line for line in lines)
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".gpu").touch()  # left by make install-gpu
    assert any('pip install "tensorflow[and-cuda]==2.15.1"' in line for line in make_dry_run("install", tmp_path))


@pytest.mark.slow
def test_the_cpu_venv_fails_the_gpu_gate():
    """The checker runs the venv's real `horovodrun --check-build`: this Gloo-only build lacks MPI and NCCL."""
    result = subprocess.run([sys.executable, str(CHECKER)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: Horovod lacks MPI (controllers), NCCL (tensor operations)" in result.stderr
