# Two everyday commands (each sets up .venv on first use):
#   make run    run the default sweep on the embedded offline dataset
#   make test   run the test suite
# `make setup` installs what a sweep needs (with the medmnist extra); `make test-setup` adds the
# test tools and the scale-out launchers (joblib, submitit, Ray), which only the tests need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup test-setup run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch>=2.2,<2.15" "torchvision>=0.17,<0.30"
	$(BIN)/python -m pip install -q -e ".[medmnist]"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,scale,medmnist]"
	touch $(TEST_STAMP)

setup: $(STAMP)

test-setup: $(TEST_STAMP)

run: setup
	$(BIN)/medprivbench

test: test-setup
	$(BIN)/python -m pytest -q -n auto

bench: setup
	$(BIN)/medprivbench-bench

clean:
	rm -rf $(VENV) .pytest_cache
