# earengine: the two commands of the quick start.
#   make run   set up if needed, then run the engine on the shipped default ear
#   make test  set up if needed, then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.earengine-installed
ARGS   ?=

.PHONY: run test setup system-deps corpus bench docs clean

run: $(STAMP)
	$(PY) -m earengine run $(ARGS)

# The whole suite, then (when no ARGS pick tests) the dream's ascent tests again with oneDNN's
# kernels capped below any machine's own: float results differ by processor, and the dream must
# climb on all of them.
KERNEL_TESTS := tests/optvis/test_dream.py tests/optvis/test_grid.py
test: $(STAMP)
	$(PY) -m pytest $(ARGS)
	@if [ -z "$(ARGS)" ]; then for isa in AVX2 SSE41; do \
		echo "== dream tests with oneDNN kernels capped at $$isa"; \
		DNNL_MAX_CPU_ISA=$$isa $(PY) -m pytest -q -p no:cacheprovider $(KERNEL_TESTS) || exit 1; done; fi

setup: $(STAMP)

# Debian packages the real-time parts need: JACK (dummy driver for headless runs and tests),
# with its tools (jack_rec, jack_midi_dump as independent peers), libsndfile and PortAudio.
system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml scripts/system-deps.sh
	@bash scripts/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a loose requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The real-music corpora (soundtracks from Debian's game-music packages, composers rendered from
# music21's scores) and the pool the shipped ear trains on, under $$EARENGINE_HOME/corpus.
corpus: $(STAMP)
	$(PY) -m earengine corpus all $(ARGS)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

docs: $(STAMP)
	$(PY) scripts/docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
