# maxswitch: `make demo` sets up and runs the codec on the built-in example; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this project's machines in /opt/wheels; elsewhere pip takes it from PyPI.
PIP_FLAGS ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: install demo test test-all reproduce bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_FLAGS) torch==2.13.0
	$(PY) -m pip install -q $(PIP_FLAGS) -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	@mkdir -p build
	$(VENV)/bin/maxswitch encode -f examples/example.png build/example.msw
	$(VENV)/bin/maxswitch decode -f build/example.msw build/example.decoded.png
	$(VENV)/bin/maxswitch info build/example.msw

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ''

clean:
	rm -rf build .pytest_cache
