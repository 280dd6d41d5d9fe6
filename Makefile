# Two commands on a fresh machine: `make demo` and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.afm-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean-venv

# Setup reruns when the pins, the project metadata or the setup script change.
$(STAMP): requirements/pins.txt pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh
	@touch $(STAMP)

install:
	bash scripts/setup_env.sh
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/afm demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_infer.py
	$(PY) bench/bench_infer_scale.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_accuracy.py

clean-venv:
	rm -rf $(VENV)
