# strongroom: `make run` starts the service on the embedded default (127.0.0.1:8200),
# `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast chaos bench mutate mutate-sample lint docs fmt clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/strongroom serve --host 127.0.0.1 --port $(or $(PORT),8200)

# Two test processes by default (TEST_WORKERS=1 for one): the suite spends much of its time
# waiting on subprocesses, fsyncs and sockets: two cut its wall time by about 40% on two cores.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test-fast: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not slow"

# The reliability suite at full size (kill -9, PostgreSQL terminations, a full disk, the audit
# store down, slow clients, fuzzing); prints the figures table and writes it to chaos-report.md.
# Needs root (tmpfs, chattr) and PostgreSQL. `make test` runs the same scenarios, smaller.
chaos: $(STAMP)
	STRONGROOM_CHAOS=full STRONGROOM_CHAOS_REPORT=chaos-report.md $(BIN)/pytest -q -p no:randomly -m chaos tests/chaos

# The HTTP section drives the servers with wrk (Debian: apt-get install -y wrk); without it that
# section is skipped with a note.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	@command -v wrk >/dev/null || echo "wrk not found: the HTTP section will be skipped (apt-get install -y wrk)"
	$(BIN)/python -m bench

# Mutation testing of the security core (tests/mutation/modules.toml): kill ratio per module
# and every surviving mutant; `MODULES=ratelimit.py` narrows it. PostgreSQL required.
mutate: $(STAMP)
	$(BIN)/python tests/mutation/mutate.py $(MODULES)

# The small fixed sample of the mutants that CI runs after the tests (a few minutes).
mutate-sample: $(STAMP)
	$(BIN)/python tests/mutation/mutate.py --sample

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
