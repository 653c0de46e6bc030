# The two commands of the README. Both install what is missing first (scripts/bootstrap.sh).
HOME_DIR ?= var
HOST ?= 127.0.0.1
PORT ?= 5000
# test processes (pytest-xdist); every fixture takes its own port and folder, so they run side by side
TEST_WORKERS ?= 4
# packages mypy checks on every test run (pyproject.toml [tool.mypy])
TYPED_PACKAGES := ca audit store directory verification backup translatable cardsim idp cli
DEMO_PORT ?= 5001
VENV := .venv

.PHONY: run test bench

# The identity provider and, beside it, the demo departmental application (an OIDC client
# registered once; its secret stays in $(HOME_DIR)/demo-client.json, mode 0600).
run: export TESSERA_PUBLIC_URL ?= http://$(HOST):$(PORT)
run:
	@scripts/bootstrap.sh
	@$(VENV)/bin/tessera --home $(HOME_DIR) init
	@if [ ! -s $(HOME_DIR)/demo-client.json ]; then \
	  $(VENV)/bin/tessera --home $(HOME_DIR) client remove demo-travel-claims >/dev/null 2>&1; \
	  umask 077 && $(VENV)/bin/tessera --home $(HOME_DIR) client add "Travel claims (demo)" --client-id demo-travel-claims \
	    --redirect-uri http://$(HOST):$(DEMO_PORT)/callback --post-logout-redirect-uri http://$(HOST):$(DEMO_PORT)/ \
	    --backchannel-logout-uri http://$(HOST):$(DEMO_PORT)/backchannel-logout \
	    --json > $(HOME_DIR)/demo-client.json.tmp && mv $(HOME_DIR)/demo-client.json.tmp $(HOME_DIR)/demo-client.json; fi
	@echo "Tessera (identity provider):    http://$(HOST):$(PORT)/   staff login: http://$(HOST):$(PORT)/login"
	@echo "Demo departmental application:  http://$(HOST):$(DEMO_PORT)/"
	@echo "Seed staff: see docs/sso.md (Ctrl-C stops both)."
	@$(VENV)/bin/python -m demo --host $(HOST) --port $(DEMO_PORT) --issuer $(TESSERA_PUBLIC_URL) \
	  --client-file $(HOME_DIR)/demo-client.json & demo=$$!; \
	  trap 'kill $$demo 2>/dev/null; wait $$demo 2>/dev/null' EXIT INT TERM; \
	  $(VENV)/bin/tessera --home $(HOME_DIR) serve --host $(HOST) --port $(PORT)

test:
	@scripts/bootstrap.sh --test
	@$(VENV)/bin/ruff check --quiet .
	@$(VENV)/bin/mypy $(TYPED_PACKAGES)
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench:
	@scripts/bootstrap.sh --test
	@$(VENV)/bin/python bench/run_all.py
