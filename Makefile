# The two commands of the README: `make demo` and `make test`.
# `make mutation` (slow, not part of `make test` or CI) runs mutation
# testing of the chip core and the crop transform (tests/MUTATION.md).
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

.PHONY: venv demo test mutation clean-demo

venv: $(STAMP)

$(STAMP): $(DEPS)
	VENV=$(VENV) bash tools/setup_venv.sh
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

# MUTATION_TARGET: chips, crop or all; MUTATION_CHILDREN: parallel mutants.
MUTATION_TARGET ?= all
mutation: $(STAMP)
	$(PY) -m pip install -q -c requirements/constraints.txt \
		-r requirements/mutation.txt
	PY=$(abspath $(PY)) bash tools/mutation.sh $(MUTATION_TARGET)

clean-demo:
	rm -rf work_dirs/demo data/sniper_demo
