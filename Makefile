# ros2_monodepth: the two entry points of the README.
#   make demo   set up, then run the node on a generated camera stream and save what it published
#   make test   set up, then run all tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ROS_ENV := scripts/ros_env.sh
DEMO_OUT ?= demo_output

.PHONY: setup test test-under-load demo typecheck clean

setup:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup_env.sh

test: setup
	$(ROS_ENV) $(PY) -m pytest -q $(PYTEST_ARGS)

# the suite beside one busy process per core: it must stay green (tests wait on events, not on a quiet machine)
test-under-load: setup
	scripts/under_load.sh $(ROS_ENV) $(PY) -m pytest -q $(PYTEST_ARGS)

typecheck: setup
	$(PY) -m mypy --config-file mypy.ini

demo: setup
	$(ROS_ENV) $(VENV)/bin/ros2-monodepth-demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) build install log .pytest_cache
