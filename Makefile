# Two commands on a fresh machine: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) requirements-uv.lock | sha1sum | cut -c1-12)
KAFKA_JAR := deploy/kafka/lib/kafka_2.13-4.1.1.jar
# Test processes (pytest-xdist), each with its own broker; a module's tests stay in one
# process (they may share a worker). TEST_JOBS=1 runs the suite in this process.
TEST_JOBS ?= 2
PARALLEL := $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)
# One intra-op thread per process: two test processes (and their workers) share two cores,
# and torch's OpenMP threads spin while they wait, so a second thread made encoding slower.
TEST_ENV := WARDEN_TEST_SCALE=ci OMP_NUM_THREADS=1
PEERS := $(patsubst bench/requirements-%.txt,.venv-%/.installed,$(wildcard bench/requirements-*.txt))

.PHONY: setup lock demo test test-long lint typecheck unit bench bench-setup kafka-up kafka-down clean

setup: $(STAMP) $(KAFKA_JAR)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the locked versions (hashes checked), then the project itself without resolving again.
# uv installs them: pip took 5-6 minutes over torch's CUDA wheels (4 GB unpacked) even with a
# warm cache; uv takes about a minute with a cold cache and seconds with a warm one. uv itself
# comes first, through pip, pinned by hash (requirements-uv.lock).
UV := $(BIN)/uv
UV_LOCK := requirements-uv.lock
$(STAMP): pyproject.toml $(LOCK) $(UV_LOCK) | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(UV_LOCK)
	$(UV) pip install -q --python $(BIN)/python --require-hashes --no-deps -r $(LOCK)
	$(UV) pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

# A deliberate upgrade: re-resolve every dependency for Linux x86_64 / Python 3.11, then commit
# requirements.lock only after `make test` passes with it (README, "Dependencies").
lock: setup
	$(UV) pip compile pyproject.toml requirements-build.in --extra dev --extra embed \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --generate-hashes --no-header $(UPGRADE) -o $(LOCK)

$(KAFKA_JAR): deploy/kafka/pom.xml
	bash deploy/kafka/kafka.sh setup
	touch $@

demo: setup
	$(BIN)/warden demo

lint: setup
	$(BIN)/ruff check streams detectors sinks tests bench

typecheck: setup
	$(BIN)/mypy streams sinks detectors

# The gate (what .ci/run runs): lint, types, unit, property and doctests, and integration
# and fault tests on the real broker (one per session) and chDB at small volumes
# (WARDEN_TEST_SCALE=ci). The README's "Tests" section lists both tiers and their times.
test: setup lint typecheck
	$(TEST_ENV) $(BIN)/pytest -q -p no:cacheprovider -m "not long" --durations=60 $(PARALLEL)

# The same tests at production volumes, plus the ones that only make sense there (marked
# long); writes var/fault-figures.json, which the README's fault table quotes.
test-long: setup lint typecheck
	WARDEN_TEST_SCALE=long OMP_NUM_THREADS=1 $(BIN)/pytest -q -p no:cacheprovider --timeout=1800 --durations=25 $(PARALLEL)
	$(BIN)/python -m tests.fault_table

unit: setup
	$(BIN)/pytest -q -m "not integration"

.venv-%/.installed: bench/requirements-%.txt
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q -r $<
	touch $@

bench-setup: setup $(PEERS)

bench: bench-setup
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

kafka-up: setup
	bash deploy/kafka/kafka.sh up

kafka-down:
	bash deploy/kafka/kafka.sh down

clean:
	rm -rf var/demo var/kafka-test-*
