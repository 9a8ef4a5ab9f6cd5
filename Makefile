# Two commands for a fresh machine (see README):
#   make demo   sets up .venv (ROS 2 Jazzy wheels + colcon build) and replays the demo bag
#   make test   sets up and runs the whole suite (.ci/run calls exactly this)
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
BAG   ?=
# make test's pytest workers (pytest-xdist; whole files per worker): two keep both cores of a CI
# machine busy, the torch tests on one while the node tests wait on DDS on the other. 0: in-process.
TEST_WORKERS ?= 2

.PHONY: setup lock demo test test-fast lint typecheck lint-params docs benchmarks clean pretrained-cards

setup:
	@bash scripts/setup_venv.sh

# Re-resolve requirements/*.txt into the hash-pinned lock files, then run `make test` against
# them; the previous locks are restored if it fails.
lock:
	@bash scripts/lock.sh

demo: setup
	@source scripts/env.sh && perception demo $(if $(BAG),--bag $(BAG),)

typecheck: setup
	@echo "==> mypy: backends against the TensorRT 10.13 stubs"
	@$(VENV)/bin/mypy src/perception_nodes/perception_nodes/backends

lint: setup
	@echo "==> ruff: format check and lint (ruff.toml; \`.venv/bin/ruff format .\` applies the format)"
	@$(VENV)/bin/ruff format --check --quiet . && $(VENV)/bin/ruff check --quiet .

test: setup typecheck lint
	@bash scripts/ensure_chromium.sh
	@echo "==> pytest ($(TEST_WORKERS) workers)"
	@source scripts/env.sh && $(PY) -m pytest tests -q -rs -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# The quick loop: the unit tests only (~20 s; no node processes, torch or shipped models).
# Markers (tests/conftest.py): unit, ros, train, shipped; e.g. pytest -m "unit or train".
test-fast: setup
	@source scripts/env.sh && $(PY) -m pytest tests -q -p no:cacheprovider -m unit

pretrained-cards: setup
	@bash scripts/pretrained_cards.sh

docs: setup
	@$(PY) scripts/gen_param_docs.py --write

benchmarks: setup
	@source scripts/env.sh && for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf build log out cache
