# Rapport: every set-up step for a fresh machine is behind `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export PYTHONPATH := $(CURDIR)
# .env (copied from .env.example) overrides the embedded defaults.
ifneq (,$(wildcard .env))
include .env
export
endif

.PHONY: help install services browser migrate seed train run workbench shell telegram-polling test test-unit test-integration \
        test-e2e test-stories lint format validate consumer notify-worker outbox-worker clean

help:
	@echo "make run     install, migrate + seed the demo CRM, train if needed, serve on :5005"
	@echo "make shell   chat with the running assistant (as demo-alice)"
	@echo "make workbench  the trainers' web app on :5010 (accounts: python -m crm_bridge add-user)"
	@echo "make notify-worker  sends due proactive messages (python -m bot notify --help)"
	@echo "make outbox-worker  delivers CRM writes to HubSpot/Salesforce (docs/crms.md)"
	@echo "make test    install, start local services if missing, lint, validate, all test tiers"

install:
	@VENV=$(VENV) bash scripts/install.sh

services:
	@bash scripts/services.sh

browser:
	@bash scripts/browser.sh

migrate: install
	$(PY) -m crm_bridge migrate

seed: migrate
	$(PY) -m crm_bridge seed

train: install
	$(PY) -m bot train

run: seed
	$(PY) -m bot serve

# The trainer workbench (log in with an account from `python -m crm_bridge add-user`).
workbench: migrate
	$(PY) -m bot workbench

shell: install
	$(PY) -m bot shell

# Telegram without a public URL (development behind NAT): long polling instead of a webhook.
telegram-polling: seed
	TELEGRAM_MODE=polling $(PY) -m bot serve

consumer: install
	$(PY) -m crm_bridge.consumer

# Proactive messages: sends what is due (retries, messages kept for quiet hours) every 30 s.
notify-worker: migrate
	$(PY) -m bot notify --deliver --every 30

# The remote CRM's outbox alone (`make run` starts it when CRM_BACKEND is not sql).
outbox-worker: migrate
	$(PY) -m crm_bridge outbox run

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

validate: install
	$(PY) -m bot validate

test-unit: install
	$(PY) -m pytest tests/unit tests/bench -q

test-integration: install services
	$(PY) -m pytest tests/integration -q

test-e2e: install services browser
	$(PY) -m pytest tests/e2e -q

test-stories: train
	$(PY) -m rasa test core --stories tests/test_stories.yml --model "$$($(PY) -m bot train | tail -n 1)" \
	  --endpoints endpoints.yml --out results/stories --fail-on-prediction-errors

test: install services browser lint validate
	$(PY) -m pytest tests -q -p no:cacheprovider
	$(MAKE) --no-print-directory test-stories

clean:
	rm -rf results .pytest_cache .mypy_cache .ruff_cache
