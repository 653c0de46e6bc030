# The two commands of the README. Both install what is missing first (scripts/bootstrap.sh).
HOME_DIR ?= var
HOST ?= 127.0.0.1
PORT ?= 5000
VENV := .venv

.PHONY: run test bench

run:
	@scripts/bootstrap.sh
	@$(VENV)/bin/tessera --home $(HOME_DIR) init
	@echo "Open http://$(HOST):$(PORT)/ in a browser (Ctrl-C stops the service)."
	@exec $(VENV)/bin/tessera --home $(HOME_DIR) serve --host $(HOST) --port $(PORT)

test:
	@scripts/bootstrap.sh --test
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench:
	@scripts/bootstrap.sh --test
	@$(VENV)/bin/python bench/run_all.py
