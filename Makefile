# maxswitch: `make demo` sets up and runs the codec on the built-in example; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this project's machines in /opt/wheels; elsewhere pip takes it from PyPI.
PIP_FLAGS ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: install demo test test-all lint format man reproduce reproduce-train bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_FLAGS) torch==2.13.0
	$(PY) -m pip install -q $(PIP_FLAGS) -e '.[test]'
	touch $@

# `man maxswitch`, `man maxswitch-encode`, ... once .venv/bin is on PATH (`. .venv/bin/activate`): man
# looks beside each PATH folder, in ../share/man; links, so that `make man` updates them
install: $(VENV)/.installed
	@mkdir -p $(VENV)/share/man/man1 && ln -sf $(CURDIR)/docs/man/*.1 $(VENV)/share/man/man1/

demo: install
	@mkdir -p build
	$(VENV)/bin/maxswitch encode -f examples/example.png build/example.msw
	$(VENV)/bin/maxswitch decode -f build/example.msw build/example.decoded.png
	$(VENV)/bin/maxswitch info build/example.msw

test: install
	$(PY) -m pytest -q

# ruff: lint and formatting check (run by .ci/run); `make format` rewrites the files.
LINTED := maxswitch tests benchmarks fuzz examples tools
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: install
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# the man pages (docs/man/*.1) from the CLI's help; a test fails when they are out of date
man: install
	$(PY) tools/make_man.py

test-all: install
	$(PY) -m pytest -q -m ''

DATA ?= ../shared/data

# Recompute every table of docs/RESULTS.md and the manifest's figures from the shipped models (minutes).
reproduce: install
	$(PY) benchmarks/reproduce.py $(DATA)

# Retrain every shipped model from scratch (hours on 2 cores; docs/TRAINING.md gives the durations).
reproduce-train: install
	$(PY) benchmarks/train_zoo.py $(DATA) --group all --threads 1

# Rate, distortion and speed of the -q ladder beside JPEG, WebP, PNG and 0.1's ladder: the reports, tables
# and plot of docs/RESULTS.md, "Rate and distortion: maxswitch bench" (about 6 and 5 minutes on 2 cores).
BENCH_LADDER := --ladder --coding both -j 2 --markdown
bench: install
	$(VENV)/bin/maxswitch bench $(DATA)/kodak $(BENCH_LADDER) --reference benchmarks/reference/kodak-maxswitch-0.1.json \
	  --json docs/bench-ladder-kodak.json --csv docs/bench-ladder-kodak.csv --plot docs/bench-ladder-kodak.png \
	  > docs/bench-ladder-kodak.md.tmp && mv docs/bench-ladder-kodak.md.tmp docs/bench-ladder-kodak.md
	$(VENV)/bin/maxswitch bench $(DATA)/test-bsds500 --limit 50 $(BENCH_LADDER) \
	  --reference benchmarks/reference/test-bsds500-first50-maxswitch-0.1.json \
	  --json docs/bench-ladder-bsds500.json --csv docs/bench-ladder-bsds500.csv \
	  > docs/bench-ladder-bsds500.md.tmp && mv docs/bench-ladder-bsds500.md.tmp docs/bench-ladder-bsds500.md

clean:
	rm -rf build .pytest_cache
