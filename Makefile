# The two set-up commands of the README:
#   make train   installs everything, then runs the main job (gin/cnn.gin)
#   make test    installs everything, then runs the test suite
#
# Everything runs in a project virtual environment (.venv) made from $(PYTHON): a
# distribution's own python3 refuses `pip install` into itself (PEP 668, "externally
# managed"). Repeated calls reuse the environment and reinstall only when pyproject.toml
# changes.
PYTHON ?= python3
TF_EXTRA ?= cpu
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python

.PHONY: install data train test

install: data $(VENV)/.installed

# Debian/Ubuntu split venv and ensurepip into python3-venv (python3.X-venv on some
# releases): installed only when creating the environment fails without them.
$(VENV_PYTHON):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  command -v apt-get >/dev/null || { echo "error: '$(PYTHON) -m venv' failed; install Python's venv module" >&2; exit 2; }; \
	  version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  apt-get update -q && apt-get install -y -q python3-venv "python$$version-venv"; \
	  $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -q --upgrade pip
	$(VENV_PYTHON) -m pip install -q -e '.[$(TF_EXTRA),test]'
	@touch $@

# Debian's copy of the real Fashion-MNIST (the framework also finds it elsewhere).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && apt-get install -y -q dataset-fashion-mnist; fi

train: install
	$(VENV_PYTHON) -m framework.main --gin_file=gin/cnn.gin

test: install
	$(VENV_PYTHON) -m pytest -q -n 2 tests
