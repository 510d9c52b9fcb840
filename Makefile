# Quick start: `make demo` and `make test`. Both set up .venv and the dataset on their own.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# torch CPU wheel pinned so pip takes the build already on disk instead of a multi-GB CUDA one.
TORCH  ?= torch==2.13.0
DEMO_OUT ?= runs/demo

.PHONY: demo test venv data lint bench clean docs

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,torch,docs]"
	touch $(STAMP)

data:
	@if [ -z "$$MPJAX_DATA_DIR" ] && [ ! -f "$(FMNIST)" ]; then \
	  echo "Installing the Fashion-MNIST dataset (Debian package dataset-fashion-mnist)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

demo: venv data
	$(VENV)/bin/mpjax demo --out $(DEMO_OUT)

test: venv data
	MPJAX_NOTEBOOK_CONFIG=small $(PY) -m pytest -q -n 2 --durations=15 --doctest-modules mpjax tests

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: venv
	$(VENV)/bin/ruff check mpjax tests

bench: venv data
	$(VENV)/bin/mpjax bench spectra

clean:
	rm -rf $(VENV) runs site
