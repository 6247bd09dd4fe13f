# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: test demo lint docs bench mutation clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev,bench,docs]'
	touch $(INSTALLED)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check pystorage tests demo docs benchmarks
	$(VENV)/bin/mypy --strict pystorage

test: lint
	$(PY) -m pytest
	$(MAKE) docs
	$(PY) -m benchmarks --quick

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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis mutants
