# The README's two commands: `make demo` (set up, build the demo artifact, serve) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACT ?= artifacts/demo
DATA ?=
ENCODER ?= --vector        # embedding recall with the base encoder; ENCODER="--adapter NAME" or ENCODER= for none
HOST ?= 127.0.0.1
PORT ?= 8000
RANKER ?= artifacts/demo-ranker   # RANKER= serves the popularity prior instead
LOGS ?= logs/demo-sim

.PHONY: install demo build ranker serve test bench eval clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

build: install
	$(VENV)/bin/keystroke build $(if $(DATA),--data $(DATA),--demo) $(ENCODER) --out $(ARTIFACT)

# Simulated shoppers on the same data give the logs the multi-task ranker learns from (~1 min on the demo);
# it learns the cosine feature with the artifact's encoder (ENCODER), so that the two are served together.
ranker: install
	rm -rf $(LOGS)
	$(VENV)/bin/keystroke simulate $(if $(DATA),--data $(DATA),--demo) --sessions 2000 --out $(LOGS)
	$(VENV)/bin/keystroke train-ranker $(if $(DATA),--data $(DATA),--demo) $(ENCODER) --logs $(LOGS) --out $(RANKER) --epochs 6

serve: install
	$(VENV)/bin/keystroke serve --artifact $(ARTIFACT) $(if $(strip $(RANKER)),--ranker $(RANKER)) --host $(HOST) --port $(PORT)

demo: build $(if $(strip $(RANKER)),ranker) serve

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m eval.bench_suggest --data ../shared/data/instacart --out reports/bench

eval: install
	$(PY) -m eval.replay_suggest --data ../shared/data/instacart --out reports/qac

clean:
	rm -rf $(VENV) artifacts reports .pytest_cache
