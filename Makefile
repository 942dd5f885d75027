# fleetnode — the README's commands. Every target installs what it needs first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
PYTHON ?= python3
NATIVE_SRC := $(shell find native -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' 2>/dev/null)

.PHONY: install sysdeps native test demo hil bench fuzz fuzz-bus lint clean firmware screenshot dist dist-test wheels

install: sysdeps $(VENV)/.installed native firmware

# Debian packages the tests and demo use: a real broker, the aarch64 cross toolchain and qemu-user.
sysdeps:
	@bash .ci/sysdeps.sh

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[dev]'
	touch $@

native: $(VENV)/.installed $(NATIVE_SRC)
	$(PY) setup.py -q build_ext --inplace

firmware:
	@if [ -f firmware_shim/Makefile ]; then $(MAKE) -s -C firmware_shim host; fi

# `make test` includes tests/dist: the wheel built here, installed in a fresh venv, no compiler.
test: install
	$(PY) -m pytest -q

# An sdist (C sources, .pyx, firmware shim sources) and a wheel for this machine, in dist/.
dist: install
	rm -rf dist
	$(PY) -m build --no-isolation --sdist --wheel --outdir dist .

# Only the wheel test (make test runs it too).
dist-test: install
	$(PY) -m pytest -q tests/dist

# manylinux x86_64 and aarch64 wheels (pyproject.toml [tool.cibuildwheel]) need a docker daemon.
wheels: install
	@if docker info >/dev/null 2>&1; then \
		$(PY) -m cibuildwheel --platform linux --output-dir wheelhouse .; \
	else \
		echo "make wheels: cibuildwheel builds manylinux wheels in docker containers, and no docker daemon" \
		     "answers here (docker info failed). 'make dist' builds a wheel for this machine."; \
		exit 1; \
	fi

# The thin path in 30 s of real time, then the overnight scenario in simulated time (the fleet
# submitting jobs all night); it prints where its report and plot are.
demo: install
	$(PY) -m hil.demo
	$(PY) -m agent.cli hil run overnight

# Every HIL scenario at full length (hil/scenarios/*.toml); reports in hil/reports/.
hil: install
	$(PY) -m agent.cli hil run --all

# docs/img/dashboard.png: the fleet dashboard in headless Chromium, with simulated cars.
screenshot: install
	$(PY) -m hil.dashboard_shot --out docs/img/dashboard.png

bench: install
	$(PY) -m bench.run

fuzz: install fuzz-bus
	$(MAKE) -C native fuzz PY=$(abspath $(PY))
	$(MAKE) -C firmware_shim fuzz

# The SLCAN parser against an independent oracle: 1,000,000 random and mutated lines.
fuzz-bus: install
	$(PY) -m tests.bus.slcan_fuzz --lines 1000000

lint: install
	$(VENV)/bin/ruff check agent hil tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf build dist wheelhouse $(VENV) agent/inference/_native*.so native/_native.c
	@if [ -f firmware_shim/Makefile ]; then $(MAKE) -s -C firmware_shim clean; fi
