# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make lab    create .venv, install, open JupyterLab on the first lesson
#   make test   create/update .venv, run every test (library, lessons, browser)
#   make reset-lessons               put every lesson back as committed (drops your edits and outputs)
#   make reset-lessons LESSON=03     the same for one lesson (notebooks/03_*.ipynb)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FIRST_LESSON := notebooks/00_tour.ipynb

.PHONY: lab test test-quick test-ui install benchmark data clean reset-lessons

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency files change: a second `make` is instant.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[lessons,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name course-lib --display-name "Python (course_lib)" >/dev/null
	@touch $@

install: $(STAMP)

# Token authentication stays on; JupyterLab prints the URL with its token.
# As root (containers, these course machines) JupyterLab needs --allow-root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# The server's root is the repository (not notebooks/), so the lessons' links to
# docs/definitions.md open in JupyterLab; the browser opens on the first lesson.
lab: install
	$(BIN)/jupyter lab $(ALLOW_ROOT) --ServerApp.root_dir=. $(FIRST_LESSON)

test: install
	$(BIN)/python -m pytest

test-quick: install   # everything but the browser tests
	$(BIN)/python -m pytest -m "not ui"

test-ui: install      # only the browser tests (JupyterLab in headless Chromium)
	$(BIN)/python -m pytest tests/ui -v

benchmark: install
	$(BIN)/python benchmarks/losses.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/distributed.py

data: install
	$(BIN)/python scripts/build_data.py

# JupyterLab autosaves what you do in a lesson (outputs, your answers) into notebooks/.
# The tests read the committed lessons, so that never breaks `make test`; this target
# restores the committed version when you want a fresh start.
LESSON ?=
LESSON_FILES := $(if $(LESSON),$(wildcard notebooks/$(LESSON)*.ipynb),notebooks/)

reset-lessons:
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || \
	  { echo "not a git checkout: download the lessons again to reset them"; exit 1; }
	@test -n "$(LESSON_FILES)" || { echo "no lesson matches notebooks/$(LESSON)*.ipynb"; exit 1; }
	git checkout -- $(LESSON_FILES)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# The executed course as a static site for reading without installing: open site/index.html
# (works from file://, offline). Runs every lesson again: a few minutes.
.PHONY: site
site: install
	$(BIN)/python scripts/build_site.py --out site
