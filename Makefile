# The README's two commands: `make demo` and `make test`. Everything else is a convenience.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint format bench fuzz clean lock fresh-check i18n

demo:
	scripts/bootstrap demo
	$(VENV)/bin/chot demo $(DEMO_ARGS)

test:
	scripts/bootstrap test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks print one table and write it into README.md (see bench/README.md).
bench:
	scripts/bootstrap test
	$(PY) bench/run_all.py --write-readme

# Long fuzzing run (a short one is part of `make test`).
fuzz:
	scripts/bootstrap test
	CHOT_FUZZ_SECONDS=$${CHOT_FUZZ_SECONDS:-600} $(PY) -m pytest -q tests/fuzz -p no:cacheprovider
	mkdir -p .fuzz-corpus
	$(PY) tests/fuzz/atheris_pass.py -max_total_time=$${CHOT_FUZZ_SECONDS:-600} -rss_limit_mb=512 .fuzz-corpus tests/fuzz/corpus

# Translations (common/i18n.py): extract messages (babel.cfg), merge them into the Vietnamese and
# English catalogs, compile the .mo files the code reads. Translate new entries, then run again.
i18n:
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --no-location --sort-output --omit-header \
		-o common/locale/chot.pot .
	$(VENV)/bin/pybabel update -i common/locale/chot.pot -d common/locale -D chot \
		--no-fuzzy-matching --ignore-obsolete
	$(VENV)/bin/pybabel compile -d common/locale -D chot --statistics

# Exact versions of every Python dependency, per role: requirements/*.txt (see README).
lock:
	scripts/bootstrap test
	scripts/lock

# Both commands on a bare Debian 12 in namespaces of its own (root; minutes): see the script.
fresh-check:
	scripts/fresh-check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info

# Raspberry Pi packaging (packaging/README.md): .debs into dist/deb/, and the package
# installed and deciding in an emulated arm64 Debian 12 root (minutes; not part of `make test`).
.PHONY: deb pi-smoke
deb:
	scripts/bootstrap-pi deb
	packaging/build-deb scanner arm64
	packaging/build-deb gateway arm64
	packaging/build-deb gateway amd64

pi-smoke:
	scripts/bootstrap test
	$(PY) scripts/pi_smoke.py

# Central store HA (issue #18): etcd + Patroni-managed PostgreSQL on loopback (central/README.md).
.PHONY: central-ha-smoke test-ha bench-ha
central-ha-smoke:
	scripts/bootstrap test
	scripts/bootstrap-ha
	$(PY) scripts/central-ha-smoke

test-ha:
	scripts/bootstrap test
	scripts/bootstrap-ha
	CHOT_HA=1 $(PY) -m pytest -q tests/central_ha $(PYTEST_ARGS)

bench-ha:
	scripts/bootstrap test
	scripts/bootstrap-ha
	$(PY) bench/bench_central_ha.py
