# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: test demo lint docs bench clean

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

demo: $(INSTALLED)
	$(PY) demo/tour.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
