# oomguard: every target does its own set-up, idempotently, on Debian/Ubuntu as root
# (a root shell needs no sudo; from a user account prefix sudo).
#   make run    set up, then run the daemon in the foreground on config.example.toml
#   make test   set up, then lint, type-check and run every test
#   make bench  set up, then run the benchmarks

PYTHON_SYSTEM := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make

# Installation layout (override on the command line; the unit is filled in to match).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= /opt/oomguard
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
DOCDIR ?= $(LIBDIR)/doc

.PHONY: setup system system-for-tests venv run test lint unit kernel vm bench doctor clean install uninstall

setup: system venv

# Distribution packages, kernel headers, tracefs. Checked every time (the
# kernel may have changed since the last run); cheap when all is in place.
system:
	@./scripts/setup-system.sh

# The same, plus the real servers the tests talk to (Prometheus, promtool, Alertmanager).
system-for-tests:
	@./scripts/setup-system.sh --for-tests
	@./scripts/setup-vm.sh

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

# Lint and types first (seconds), then every test: unit, then the real kernel.
test: system-for-tests venv lint
	$(PY) -m pytest --durations=25 tests/unit tests/kernel tests/vm

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Fast tests that need neither root nor a kernel (seconds).
unit: venv
	$(PY) -m pytest tests/unit

# Real BPF, real cgroups, real OOM kills, a real systemd (root); without the VM guests.
kernel: system-for-tests venv
	$(PY) -m pytest --durations=10 tests/kernel

# The VM guests alone: other kernels and cgroup v2 under qemu (most of `make test`'s time).
vm: system-for-tests venv
	$(PY) -m pytest --durations=10 tests/vm

# Each prints its table with the same-run baseline; see README "Performance".
# Every benchmark runs; the target fails if any verdict is a miss or too noisy to judge.
bench: setup
	@status=0; for b in kmalloc_cost tick_cost footprint controller accuracy deep_cost descriptor_cost detect workloads; do \
		echo "== bench/$$b.py"; $(PY) bench/$$b.py || status=1; echo; done; exit $$status

doctor: setup
	$(VENV)/bin/oomguard doctor

clean:
	rm -rf $(VENV) $(STAMPS) src/*.egg-info .pytest_cache

# A virtualenv of its own under LIBDIR (from the distribution's python, so
# bcc imports), the command in BINDIR, the unit, and the policy - the policy
# only if there is none: a user's edited file is never overwritten.
install: system
	@test -x $(LIBDIR)/bin/python || $(PYTHON_SYSTEM) -m venv --system-site-packages $(LIBDIR)
	$(LIBDIR)/bin/python -m pip install --quiet --disable-pip-version-check .
	install -d $(BINDIR) $(UNITDIR) $(SYSCONFDIR)/oomguard $(DOCDIR)
	ln -sfn $(LIBDIR)/bin/oomguard $(BINDIR)/oomguard
	install -m 0644 README.md $(DOCDIR)/README.md
	install -m 0644 docs/runbook.md $(DOCDIR)/runbook.md
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
		systemd/oomguard.service > $(UNITDIR)/oomguard.service
	@if [ -e $(SYSCONFDIR)/oomguard/config.toml ]; then \
		echo "kept your $(SYSCONFDIR)/oomguard/config.toml"; \
	else \
		install -m 0600 config.example.toml $(SYSCONFDIR)/oomguard/config.toml; \
	fi
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: systemctl enable --now oomguard"

# Removes what install added; the policy only if it was never edited.
uninstall:
	@if [ -d /run/systemd/system ]; then systemctl disable --now oomguard 2>/dev/null || true; fi
	rm -f $(UNITDIR)/oomguard.service $(BINDIR)/oomguard
	rm -rf $(LIBDIR)
	@if cmp -s config.example.toml $(SYSCONFDIR)/oomguard/config.toml; then \
		rm -f $(SYSCONFDIR)/oomguard/config.toml; rmdir $(SYSCONFDIR)/oomguard 2>/dev/null || true; \
	elif [ -e $(SYSCONFDIR)/oomguard/config.toml ]; then \
		echo "kept your edited $(SYSCONFDIR)/oomguard/config.toml"; \
	fi
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
