# Every target builds its own environment first: a fresh clone needs only `make test` or `make train`.
#
#   make install        CPU TensorFlow (default), Horovod with Gloo, the package, test tools
#   make install-gpu    GPU cluster build (Perlmutter): CUDA TensorFlow, Horovod rebuilt with MPI and
#                       NCCL, refused unless `horovodrun --check-build` ticks TensorFlow, MPI and NCCL
#   make -n install-gpu prints what it would run (a dry run)
#
# Horovod is built from source against the TensorFlow already in the venv, hence --no-build-isolation.

PYTHON         ?= python3.11
VENV           ?= .venv
GPU_TF_PACKAGE ?= tensorflow[and-cuda]==2.15.1
HOROVOD        ?= horovod==0.28.1
EXTRAS         ?= test,pythia
PYTEST_ARGS    ?=

BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
GPU_STAMP := $(VENV)/.gpu
# A venv made by install-gpu stays a GPU venv when `make install` runs again (after a pull).
TF_PACKAGE ?= $(if $(wildcard $(GPU_STAMP)),$(GPU_TF_PACKAGE),tensorflow-cpu==2.15.1)
# Cray's compiler wrappers, which bring cray-mpich, when a PrgEnv is loaded (HPE Cray EX).
CRAY_COMPILERS := $(if $(CRAYPE_VERSION),CC=cc CXX=CC)

export HOROVOD_WITH_TENSORFLOW = 1
export HOROVOD_WITH_GLOO = 1
export HOROVOD_WITHOUT_PYTORCH = 1
export HOROVOD_WITHOUT_MXNET = 1
export HOROVOD_WITHOUT_MPI ?= 1
# pip's cmake 4 rejects Gloo's old cmake_minimum_required; the system cmake 3.x is used when present.
export CMAKE_POLICY_VERSION_MINIMUM = 3.5
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install install-gpu test test-fast train demo benchmarks fidelity clean

install: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23.2" "setuptools<70" wheel
	$(BIN)/python -m pip install "$(TF_PACKAGE)" "numpy<2"
	$(BIN)/python -c "import horovod.tensorflow" 2>/dev/null || \
		$(BIN)/python -m pip install --no-build-isolation "$(HOROVOD)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	$(BIN)/python -c "import horovod, horovod.tensorflow, tensorflow as tf; print('TensorFlow', tf.__version__, '| Horovod', horovod.__version__)"
	touch $(STAMP)

# Horovod (and a CPU TensorFlow) is uninstalled and Horovod rebuilt bypassing pip's wheel cache,
# so no CPU (Gloo-only) build survives: under srun such a build leaves every task alone (rank 0 of 1). Load the compiler,
# MPI, CUDA and NCCL modules first (README: On a GPU cluster).
install-gpu:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23.2" "setuptools<70" wheel
	$(BIN)/python -m pip uninstall --yes horovod tensorflow-cpu
	$(BIN)/python -m pip install "$(GPU_TF_PACKAGE)" "numpy<2"
	env -u HOROVOD_WITHOUT_MPI HOROVOD_WITH_MPI=1 HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_LINK=SHARED \
		$(CRAY_COMPILERS) $(BIN)/python -m pip install --no-build-isolation --no-cache-dir "$(HOROVOD)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	$(BIN)/python jobs/check_horovod_build.py
	touch $(GPU_STAMP) $(STAMP)

test: install
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_ARGS)

train: install
	$(BIN)/python -m lhco_diffusion.train --config configs/default.yaml --resume

demo: install
	$(BIN)/python -m lhco_diffusion.pipeline --config configs/default.yaml

benchmarks: install
	for script in $(filter-out benchmarks/fidelity.py,$(wildcard benchmarks/*.py)); do \
		$(BIN)/python $$script || exit 1; done

# The science regression check (README, "Checking a change for science regressions"): Pythia
# pseudo-LHCO events at P=30, a 30-minute training, two-sample/cwola/idealized with 3 seeds.
# Extra options: make fidelity FIDELITY_ARGS='--set data.raw=FILE'
fidelity: install
	$(BIN)/python benchmarks/fidelity.py $(FIDELITY_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
