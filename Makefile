# The two set-up commands of the README:
#   make train   installs everything, then runs the main job (gin/cnn.gin)
#   make test    installs everything, then runs the test suite
PYTHON ?= python3
TF_EXTRA ?= cpu

.PHONY: install data train test

install: data
	$(PYTHON) -m pip install -q -e '.[$(TF_EXTRA),test]'

# Debian's copy of the real Fashion-MNIST (the framework also finds it elsewhere).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && apt-get install -y -q dataset-fashion-mnist; fi

train: install
	$(PYTHON) -m framework.main --gin_file=gin/cnn.gin

test: install
	$(PYTHON) -m pytest -q -n 2 tests
