# The two commands of the README: `make run` and `make test`. Each creates .venv when missing,
# with every install profile (pyproject.toml): the app, the engine, onnxruntime's CUDA build, tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bundle clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[engine,gpu,dev]'
	@touch $(STAMP)

## run: the app's main job (the built-in demo when no data is given); pass arguments with ARGS="..."
run: $(STAMP)
	$(BIN)/cxrscreen $(ARGS)

## test: the whole test suite (Qt offscreen), one worker process per CPU core (pytest-xdist; a test
## module is one work unit, tests/conftest.py); TEST_WORKERS=0 runs it in this process alone
TEST_WORKERS ?= auto
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

## bundle: the desktop bundle (dist/cxrscreen-app/) built from a base-profile environment without torch
## (build/bundle-venv, this checkout installed as a wheel, not editable: PyInstaller collects the
## installed cxrscreen package), then smoke-tested offscreen; pass options with BUNDLE_ARGS="--engine '...'"
BUNDLE_VENV := build/bundle-venv
bundle:
	@test -x $(BUNDLE_VENV)/bin/python || $(PYTHON) -m venv $(BUNDLE_VENV)
	$(BUNDLE_VENV)/bin/python -m pip install --quiet '.[cpu,bundle,dev]'
	$(BUNDLE_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	$(BUNDLE_VENV)/bin/python packaging/build.py $(BUNDLE_ARGS)

clean-venv:
	rm -rf $(VENV)
