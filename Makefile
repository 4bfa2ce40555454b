# RFStudio. Two commands set up a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DJANGO_SETTINGS_MODULE := config.settings
# Local runs (demo, tests) use DEBUG settings; production sets DJANGO_SECRET_KEY and leaves it off.
export DJANGO_DEBUG ?= 1
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test lint format migrate seed web worker bench clean-demo

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[cpu,ml,dev,rq,s3]"
	touch $@

install: $(VENV)/.installed

migrate: install
	DJANGO_DEBUG=1 $(BIN)/python manage.py migrate --noinput

seed: migrate
	DJANGO_DEBUG=1 $(BIN)/python manage.py seed_demo

# Installs, migrates SQLite, seeds demo data, then runs the web server and one worker for both
# queues until Ctrl-C.
demo: seed
	@echo
	@echo "  RFStudio demo:  http://$(HOST):$(PORT)/"
	@echo "  Logins (password 'demo-pass-123'): annotator1, annotator2, qa1, ml1; admin: admin"
	@echo
	@trap 'kill 0' EXIT INT TERM; \
	DJANGO_DEBUG=1 $(BIN)/python manage.py db_worker --queue-name default,gpu --worker-id demo-worker --no-reload & \
	DJANGO_DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT) --noreload; \
	wait

lint: install
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole suite (lint first). DATABASE_URL selects the database (default: SQLite).
test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/annotation.py --items 100000
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/rfnet.py
	$(BIN)/python bench/ranking.py
