# early_exit: `make test` and `make demo` do all set-up on a fresh clone (Python 3.11, no GPU).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.early_exit_installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
PYTEST_ARGS ?= -n 2

LOCK_VENV ?= /tmp/early_exit_lock_venv

.PHONY: install test demo docs fixtures lock clean-venv

install: $(STAMP)

# The environment is rebuilt whenever the recipe or the requirements change.
$(STAMP): requirements.txt requirements.lock scripts/install.sh pyproject.toml setup.py
	bash scripts/install.sh $(VENV)
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS) tests

# The main job: writes only under demo_output/ (the clone stays clean).
demo: install
	bash scripts/demo.sh

# A maintainer's step: the demo, then its results copied into docs/demo.md and docs/demo/.
docs: install
	DEMO_UPDATE_DOCS=1 bash scripts/demo.sh

# Regenerates the tiny random BERT under test_fixtures/ (committed; tests never need a network).
fixtures: install
	$(PY) scripts/make_tiny_bert.py test_fixtures/tiny_bert

# Rewrites requirements.lock: a fresh environment from requirements.txt's ranges (no lock), then the
# exact version of every package in it (early_exit itself and pip aside). Commit the result.
lock:
	rm -rf $(LOCK_VENV)
	EARLY_EXIT_UNLOCKED=1 bash scripts/install.sh $(LOCK_VENV)
	{ echo "# Written by \`make lock\` from requirements.txt; scripts/install.sh installs these versions."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable --disable-pip-version-check \
	  | grep -v -i -E '^(pip|early[-_]exit)=='; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	rm -rf $(LOCK_VENV)

clean-venv:
	rm -rf $(VENV)
