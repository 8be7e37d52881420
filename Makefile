# The commands the README shows. `make demo` and `make test` set up everything
# they need on a fresh machine: a virtual environment with PyTorch, this
# package, and Graphviz's `dot` binary (via apt when it is missing).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.archdsl-installed

.PHONY: demo test lint format fuzz clean dot docs images bench

demo: $(STAMP)
	$(BIN)/archdsl check
	$(BIN)/archdsl compile resnet50

# Two xdist workers for most of the suite, then the memory-heavy tests on their own, in two processes
# (tests/conftest.py says why); `pytest` alone runs everything in one process.
test: $(STAMP) dot
	$(BIN)/ruff check archdsl tests
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not memory_heavy"
	$(BIN)/pytest -q -m "memory_heavy and not second_process"
	$(BIN)/pytest -q -m second_process

lint: $(STAMP)
	$(BIN)/ruff check archdsl tests

format: $(STAMP)
	$(BIN)/ruff format archdsl tests

fuzz: $(STAMP)
	ARCHDSL_FUZZ_EXAMPLES=20000 $(BIN)/pytest -q tests/test_robustness.py tests/test_fuzz_values.py tests/test_fuzz_structure.py
	ARCHDSL_FUZZ_EXAMPLES=500 $(BIN)/pytest -q tests/test_fuzz_checkpoints.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[test,onnx]'
	touch $(STAMP)

# Graphviz's `dot` renders diagrams; install it from the system's packages when missing.
dot:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null); \
	  else \
	    echo "Graphviz's dot is missing: install it with 'sudo apt-get install graphviz' (or 'brew install graphviz')" >&2; exit 1; \
	  fi; }

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python -m archdsl.zootable docs/zoo.md

images: $(STAMP)
	$(BIN)/archdsl render resnet50 -o docs/images/resnet50.png
	$(BIN)/archdsl render densenet121 -o docs/images/densenet121.png
	$(BIN)/archdsl render densenet121 --expand features.denseblock1 -o docs/images/densenet121_denseblock1.png
	$(BIN)/archdsl render cifar_resnet -p depth=56 -o docs/images/cifar_resnet56.png
	$(BIN)/archdsl render googlenet --expand inception3a -o docs/images/googlenet.png
	$(BIN)/archdsl render highway_fc --expand layers.0 -o docs/images/highway_fc.png
	$(BIN)/archdsl render vit_b_16 --expand encoder.layers.encoder_layer_0 -o docs/images/vit_b_16_layer0.png
	$(BIN)/archdsl render gpt --expand transformer.h.0 --expand transformer.h.0.attn -o docs/images/gpt_attention.png
	$(BIN)/archdsl render unet -o docs/images/unet.png

# Every benchmark on the shipped defaults (about 25 minutes on 2 cores); one alone: python -m bench.NAME --help
bench: $(STAMP) dot
	$(BIN)/python -m bench render compiler parse_speed train_step inference dense_memory compile_speed
