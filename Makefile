# Every target builds its own environment first: a fresh clone needs only `make test` or `make train`.
#
#   make install                      CPU TensorFlow (default), Horovod with Gloo, the package, test tools
#   make install TF_PACKAGE='tensorflow[and-cuda]==2.15.1'   GPU build (clusters; see README)
#
# Horovod is built from source against the TensorFlow already in the venv, hence --no-build-isolation.

PYTHON      ?= python3.11
VENV        ?= .venv
TF_PACKAGE  ?= tensorflow-cpu==2.15.1
HOROVOD     ?= horovod==0.28.1
EXTRAS      ?= test,pythia
PYTEST_ARGS ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

export HOROVOD_WITH_TENSORFLOW = 1
export HOROVOD_WITH_GLOO = 1
export HOROVOD_WITHOUT_PYTORCH = 1
export HOROVOD_WITHOUT_MXNET = 1
export HOROVOD_WITHOUT_MPI ?= 1
# pip's cmake 4 rejects Gloo's old cmake_minimum_required; the system cmake 3.x is used when present.
export CMAKE_POLICY_VERSION_MINIMUM = 3.5
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-fast train demo benchmarks fidelity clean

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
