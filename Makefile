# fleetnode — the README's commands. Every target installs what it needs first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
PYTHON ?= python3
NATIVE_SRC := $(shell find native -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' 2>/dev/null)

.PHONY: install sysdeps native test demo hil bench fuzz fuzz-bus lint clean firmware

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

test: install
	$(PY) -m pytest -q

# The thin path in 30 s of real time, then the overnight scenario in simulated time (the fleet
# submitting jobs all night); it prints where its report and plot are.
demo: install
	$(PY) -m hil.demo
	$(PY) -m agent.cli hil run overnight

# Every HIL scenario at full length (hil/scenarios/*.toml); reports in hil/reports/.
hil: install
	$(PY) -m agent.cli hil run --all

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
	rm -rf build $(VENV) agent/inference/_native*.so native/_native.c
	@if [ -f firmware_shim/Makefile ]; then $(MAKE) -s -C firmware_shim clean; fi
