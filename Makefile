# Two commands on a fresh machine: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
KAFKA_JAR := deploy/kafka/lib/kafka_2.13-4.1.1.jar
PEERS := $(patsubst bench/requirements-%.txt,.venv-%/.installed,$(wildcard bench/requirements-*.txt))

.PHONY: setup demo test lint typecheck unit bench bench-setup kafka-up kafka-down clean

setup: $(STAMP) $(KAFKA_JAR)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,embed]"
	rm -f $(VENV)/.installed-* && touch $@

$(KAFKA_JAR): deploy/kafka/pom.xml
	bash deploy/kafka/kafka.sh setup
	touch $@

demo: setup
	$(BIN)/warden demo

lint: setup
	$(BIN)/ruff check streams detectors sinks tests bench

typecheck: setup
	$(BIN)/mypy streams sinks detectors

# Everything: lint, types, detector unit tests and doctests, integration and fault tests
# against the real broker (started once by a pytest session fixture) and chDB.
test: setup lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

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
