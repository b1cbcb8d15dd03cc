# Two entry points (see README): `make tour` and `make test`. Everything else is set-up they share.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: tour test quick lint format bench docs setup chromium clean

# The venv is rebuilt when the pins or the project's dependencies change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" "uv==0.13.9"
	# uv installs the exact pins into the venv in one resolution: it downloads and unpacks in parallel,
	# 59 s where pip took 100 s (torch first, then the rest; measured side by side, empty caches).
	# --compile-bytecode: these machines set PYTHONDONTWRITEBYTECODE=1, so a module left uncompiled is
	# compiled again by every process that imports it (a fresh clone without it: 1,320 s of tests instead
	# of 1,110 s). --system-certs: the machine's certificate store, the one pip uses (PIP_CERT). The venv keeps
	# pip (tests/venvs.py builds its install checks with it).
	$(VENV)/bin/uv pip install -q --python $(PY) --system-certs --compile-bytecode -c constraints.txt \
		torch torchvision -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

chromium:
	bash scripts/install_chromium.sh

# Main job: run the tour notebook on the embedded zoo model, write an HTML report.
tour: $(STAMP)
	$(VENV)/bin/workbench run notebooks/00_tour.ipynb
	@echo "Explore interactively: $(VENV)/bin/workbench lab   (JupyterLab on notebooks/)"

# Whole suite: unit tests, notebooks (papermill, scale=ci) and browser tests (headless Chromium).
test: $(STAMP) chromium
	$(VENV)/bin/ruff check workbench tests benchmarks
	# three workers of one torch thread each on the two cores (tests/xdist_order.py deals them blocks of equal
	# estimated time, longest first), browser tests included: the suite keeps both cores busy (191 % CPU over
	# the run) where two workers left them idle during kernel starts, page loads and installs
	# (measured: 1,110 s vs 1,002 s + 257 s for two workers, then the browser tests alone)
	$(PY) -m pytest -q -n 3 --dist worksteal --durations=40

quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check workbench tests benchmarks
	$(VENV)/bin/ruff format --check workbench tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format workbench tests benchmarks
	$(VENV)/bin/ruff check --fix workbench tests benchmarks

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# The documentation site in build/site (open build/site/index.html, or serve it: $(VENV)/bin/mkdocs serve).
# Strict: any warning (a docstring griffe cannot parse, a broken link or reference) fails the build.
# Notebooks are rendered without outputs; EXECUTE=1 runs them first with papermill at scale="ci".
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 WORKBENCH_DOCS_EXECUTE=$(EXECUTE) $(VENV)/bin/mkdocs build --strict
	@echo "Documentation: build/site/index.html"

clean:
	rm -rf $(VENV) reports .pytest_cache
