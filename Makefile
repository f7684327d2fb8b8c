# Everything runs in .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where pyenv keeps several Pythons, they answer as python3.12 etc. only with this set.
PYENV_VERSIONS ?= 3.11.7:3.12.1:3.13.0:3.10.13

.PHONY: demo test lint bench example clean

demo: $(VENV)/.installed
	$(BIN)/pgq demo

# Django 6 on Python 3.12 in its own tox env first (skipped where no python3.12),
# then the whole suite in .venv (Python 3.10+, Django 5.2 with the django-tasks backport).
test: $(VENV)/.installed lint
	PYENV_VERSION=$(PYENV_VERSIONS) $(BIN)/tox -e py312-django6
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check pgq pgq_django tests bench example_project
	$(BIN)/mypy

example: $(VENV)/.installed
	$(BIN)/python example_project/run.py

bench: $(VENV)/.installed
	$(BIN)/python -m bench

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "pgq needs Python 3.10+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,django]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
