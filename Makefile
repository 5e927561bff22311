# The two commands of the README: `make demo` and `make test`.
# Each creates or updates the virtual environment first (seconds when
# nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmsniper-ready
# The package is installed (not editable) so that mmengine finds its configs
# for ``mmsniper::`` inheritance; any change to it reinstalls it.
DEPS := setup.py tools/setup_venv.sh model-index.yml \
	$(wildcard requirements/*.txt) \
	$(shell find mmsniper configs -name '*.py' -o -name '*.yml' 2>/dev/null)

.PHONY: venv demo test clean-demo

venv: $(STAMP)

$(STAMP): $(DEPS)
	VENV=$(VENV) bash tools/setup_venv.sh
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean-demo:
	rm -rf work_dirs/demo data/sniper_demo
