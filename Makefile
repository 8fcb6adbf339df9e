# Prisma: `make run` starts the site on this machine, `make test` runs the whole suite.
# Both install what is missing first; a second run reuses the virtualenv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
REDIS_PORT ?= 6379
PYTEST_ARGS ?=

.PHONY: run test check-migrations clean-venv help

help:
	@echo "make run    - install, migrate, load styles, start Redis + worker + web on http://127.0.0.1:$(PORT)/"
	@echo "make test   - install, start a throwaway Redis, run the whole test suite"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))."; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "python3 -m venv failed; installing Debian's python3-venv."; \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv; fi; \
		$(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-runtime

run: $(VENV)/.installed-runtime
	$(PY) -m prisma_site.devstack run --port $(PORT) --redis-port $(REDIS_PORT)

test: $(VENV)/.installed-dev
	$(PY) -m prisma_site.devstack with-redis -- $(PY) -m pytest $(PYTEST_ARGS)

check-migrations: $(VENV)/.installed-runtime
	$(PY) manage.py makemigrations --check --dry-run

clean-venv:
	rm -rf $(VENV)
