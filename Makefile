# Two commands on a fresh machine: `make bench` and `make test` (both create .venv first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

METHOD   ?= btf_fpfh
DATASET  ?= synthetic
PROTOCOL ?=
ROOT     ?=
PAPER    ?=
RUN      ?=
ARGS     ?=

.PHONY: setup bench report test test-slow tables perf lint clean-venv

setup: $(STAMP)

$(STAMP): setup.cfg requirements/constraints.txt
	bash scripts/system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[faiss,dev]"
	touch $(STAMP)

bench: $(STAMP)
	$(PY) -m benchmark run --method $(METHOD) --dataset $(DATASET) \
		$(if $(ROOT),--root $(ROOT)) $(if $(PROTOCOL),--protocol $(PROTOCOL)) \
		$(if $(RUN),--out $(RUN)) $(ARGS)

# a browsable offline HTML report of a run (default: the newest run under results/runs)
report: $(STAMP)
	$(PY) -m benchmark report $(if $(RUN),--run $(RUN)) $(if $(PAPER),--paper $(PAPER)) $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(ARGS)

# the slow suite includes the report's headless-browser test: chromium is installed when root
test-slow: $(STAMP)
	bash scripts/system_deps.sh --browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow $(ARGS)

tables: $(STAMP)
	$(PY) -m benchmark tables --paper $(PAPER) --regenerate $(ARGS)

# adeval (a contender of the metrics suite) without its GUI OpenCV: the headless build suffices
perf: $(STAMP)
	$(PY) -c "import importlib.util as u, sys; sys.exit(u.find_spec('adeval') is None)" || \
		$(PY) -m pip install -q -c requirements/constraints.txt --no-deps ADEval opencv-python-headless
	$(PY) -m benchmark perf $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
