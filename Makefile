# oomguard: every target does its own set-up, idempotently, on Debian/Ubuntu as root.
#   sudo make run    set up, then run the daemon in the foreground on config.example.toml
#   sudo make test   set up, then run every test
#   sudo make bench  set up, then run the benchmarks

PYTHON_SYSTEM := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make

.PHONY: setup system venv run test unit bench doctor clean

setup: system venv

# Distribution packages, kernel headers, tracefs. Checked every time (the
# kernel may have changed since the last run); cheap when all is in place.
system:
	@./scripts/setup-system.sh

venv: $(STAMPS)/venv

# Re-done only when pyproject.toml changes.
$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

run: setup
	$(VENV)/bin/oomguard run -c config.example.toml

test: setup
	$(PY) -m pytest

# Fast tests that need neither root nor a kernel.
unit: venv
	$(PY) -m pytest -m 'not kernel'

# Each prints its table with the same-run baseline; see README "Performance".
bench: setup
	$(PY) bench/kmalloc_cost.py
	$(PY) bench/tick_cost.py
	$(PY) bench/controller.py
	$(PY) bench/accuracy.py

doctor: setup
	$(VENV)/bin/oomguard doctor

clean:
	rm -rf $(VENV) $(STAMPS) src/*.egg-info .pytest_cache
