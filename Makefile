# Two commands on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv with Python >= 3.12 and install the project into it from pyproject.toml:
# the demo needs the base install (engine + backtest CLI) with the 'api' and 'plots' extras.

PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3.13 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo backtest-demo test bench bench-peers bench-issue18 clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "tickbridge needs Python >= 3.12 (set PYTHON=/path/to/python3.12)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[api,plots]'
	touch $(STAMP)

# the tests need every extra: torch (its PyPI wheel for Linux is the CUDA build, ~3 GB, about
# 90 s to install from PyPI here; it runs on the CPU), the broker SDKs, Ray and the API's tools
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/tickbridge demo

backtest-demo: $(STAMP)
	mkdir -p out
	$(BIN)/tickbridge backtest --strategy sma_cross --data data/stocks/SPY_daily.csv \
		--param fast=10 --param slow=30 --commission 0.001 \
		--json out/demo.json --trades out/demo_trades.csv --plot out/demo.png

# the layering contracts (pyproject.toml [tool.importlinter]) and ruff first: seconds, and a breach
# is a design bug. The tests run on one pytest-xdist worker per CPU the process may use (tests/conftest.py):
# most of them wait on bots, subprocesses, sockets and databases, so two workers on a 2-core CI box
# roughly halve the wall time. Tests take their own tmp dir, port, SQLite file, PostgreSQL schema and
# Redis key prefix; the demo tests share the repo's var/, whose files the demo keys by store.
# (--dist loadgroup is no use here: xdist 3.8 tags a grouped test by setting item._nodeid, which
# pytest 9.2 no longer reads, so xdist_group marks are silently ignored.)
test: $(TEST_STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto

bench: $(STAMP)
	$(BIN)/python bench/backtest_speed.py

# tickbridge against backtesting.py, vectorbt, a numpy loop and a bare Python loop on the same bars
# (bench/peers.py). The peers live in a venv of their own, pinned by bench/requirements-peers.txt.
PEERS_VENV := bench/.venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): bench/requirements-peers.txt
	@test -n "$(PYTHON)" || { echo "the peers need Python >= 3.12 (set PYTHON=/path/to/python3.12)"; exit 1; }
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -r bench/requirements-peers.txt
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/peers.py $(PEERS_ARGS)

# issue 18's table, every row on this tree and on the tree before issue 18 (ISSUE18_ARGS, e.g.
# --before DIR, --no-before, --quick, --out table.md), from one run (bench/issue18.py)
bench-issue18: $(STAMP) $(PEERS_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/issue18.py $(ISSUE18_ARGS)

clean:
	rm -rf $(VENV) out var
