# FaceOps: `make run` (the main job) and `make test` (the tests) set everything up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

export FACEOPS_WEIGHTS ?= $(abspath $(SHARED))/weights/inception_resnet_v1_casia-webface.pt
export FACEOPS_SHARED_DIR ?= $(abspath $(SHARED))
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: help venv browser prometheus postgres tools bench-index bench-speed bench-detector bench-optimize run demo test test-e2e test-all fuzz lint bench bench-lfw bench-finetune closed-loop serve monitor clean

help: ## Show this help
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create the virtual environment with every dependency (reused when pyproject.toml is unchanged)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=python3.12 ...)"; exit 1; }
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "Installing FaceOps and its dependencies into $(VENV) (first time: several minutes)..."
	$(VENV)/bin/pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
	$(VENV)/bin/pip install -q -e '.[mlops,serve,dev]' 2>&1 | grep -v -e "is ignored: it is neither" -e "BuildBackendWarning" || true
	$(VENV)/bin/pip install -q --no-deps facenet-pytorch==2.6.0 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import faceops, facenet_pytorch, torch" || { echo "installation failed"; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

run: venv ## The main job (kfp.local): import LFW people with >= 10 images (or DATA=folder), validate, preprocess, train, evaluate, register, promote; RUN_ARGS=--verbose shows every log line
	$(VENV)/bin/faceops pipeline run --local --config $(or $(RUN_CONFIG),configs/train.yaml) \
	  $(if $(DATA),--source "$(DATA)" --min-images $(or $(MIN_IMAGES),10),--source $(SHARED)/datasets/lfw --identities $(SHARED)/datasets/lfw/people_min10.txt) $(RUN_ARGS)

demo: venv ## Face-core demo: enrol LFW people, recognise new photos and strangers (outputs/demo)
	$(PY) -m faceops.demo --shared $(SHARED)

# The web-page tests drive the page in headless Chromium (tests/serving/test_web.py); without it they are skipped.
BROWSER_MISSING := chromium not found: the web-page tests (tests/serving/test_web.py) will be SKIPPED. \
  Install it with 'sudo apt-get install -y chromium' (Debian; any chromium or chromium-browser on PATH works), \
  then run make test again.

browser: ## Install Debian's chromium for the web-page tests when missing (as root or with passwordless sudo)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true >/dev/null 2>&1; then sudo="sudo -n"; else sudo=no; fi; \
	if [ "$$sudo" != no ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing chromium (Debian package) for the web-page tests..."; \
	  { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "apt-get could not install chromium"; \
	fi; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || echo "NOTE: $(BROWSER_MISSING)"

# Prometheus and promtool scrape the service and check the alert rules (tests/serving/test_prometheus.py).
prometheus: ## Install Debian's prometheus (server + promtool) for the monitoring tests when missing
	@if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true >/dev/null 2>&1; then sudo="sudo -n"; else sudo=no; fi; \
	if [ "$$sudo" != no ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing prometheus (Debian package) for the monitoring tests..."; \
	  { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	    || echo "apt-get could not install prometheus"; \
	fi; \
	command -v promtool >/dev/null 2>&1 || echo "NOTE: prometheus not found: tests/serving/test_prometheus.py will be partly SKIPPED (sudo apt-get install -y prometheus)"

# PostgreSQL's server (initdb, pg_ctl) for the shared-store tests (tests/serving/pg_server.py).
postgres: ## Install Debian's postgresql server binaries for the shared-store tests when missing
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true >/dev/null 2>&1; then sudo="sudo -n"; else sudo=no; fi; \
	if [ "$$sudo" != no ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing postgresql (Debian package) for the shared-store tests..."; \
	  { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
	    || echo "apt-get could not install postgresql"; \
	fi; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo "NOTE: PostgreSQL's server not found: the shared-store tests will be SKIPPED (sudo apt-get install -y postgresql)"

tools: browser prometheus postgres ## Every outside program the tests use (chromium, prometheus, postgresql)

NEED_DATASETS := @test -d $(SHARED)/datasets || { echo "$(SHARED)/datasets not found: the tests read real images from ../shared"; exit 1; }

test: venv tools ## The tests (unit + integration; not the slow, benchmark or e2e ones); installs chromium and prometheus when it can
	$(NEED_DATASETS)
	$(PY) -m pytest -m "not slow and not benchmark and not e2e" --durations=40 $(PYTEST_ARGS)

test-e2e: venv tools ## The life cycle end to end (about 14 min): kfp.local training runs, the monitor following its run, the closed loop
	$(NEED_DATASETS)
	$(PY) -m pytest -m e2e --durations=10 $(PYTEST_ARGS)

test-all: venv tools ## Every test, slow ones included
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# make test runs the fuzzers bounded (a few dozen seeded cases per operation / test); this is the long run.
FUZZ_EXAMPLES ?= 400
FUZZ_SEED ?= 20260113

fuzz: venv ## Long fuzzing run: schemathesis on every API operation, hypothesis on the WebSocket, images and the face path (FUZZ_EXAMPLES=400 per operation/test, FUZZ_SEED); figures in benchmarks/results/fuzz.json
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) FUZZ_REPORT=benchmarks/results/fuzz.json \
	  $(PY) -m pytest -m fuzz tests/serving/test_fuzz_api.py tests/serving/test_fuzz_stream.py tests/face/test_fuzz_images.py $(PYTEST_ARGS)

lint: venv ## Ruff lint and mypy type check
	$(VENV)/bin/ruff check src tests benchmarks serving monitoring components pipelines
	$(VENV)/bin/mypy src serving monitoring components pipelines

bench-index: venv ## 1:N search: FAISS PQ scan (default), usearch, FAISS HNSW and hnswlib at 10k and 100k (SIZES=1000000 LIBS=faiss-pq-fastscan: the 1M gallery, ~15 min)
	$(PY) benchmarks/gallery_index.py --sizes $(or $(SIZES),10000 100000) --libraries $(or $(LIBS),faiss-pq-fastscan usearch faiss-hnsw-sq8 hnswlib)

bench-speed: venv ## Detect + embed side by side: facenet-pytorch as shipped, FaceOps torch, ONNX, int8, MobileFaceNet (long; QUICK=1: 20 photos)
	$(PY) benchmarks/inference_speed.py $(if $(QUICK),--quick)

bench-detector: venv ## MTCNN pyramid settings per stage, batched vs one at a time, and the retry ladder on the listed misses
	$(PY) benchmarks/detector.py bench --out benchmarks/results/detector.json

bench-optimize: venv ## The accuracy-parity gate of each inference variant against the pretrained default on LFW pairs (long)
	$(PY) benchmarks/optimize_lfw.py --out benchmarks/results/optimize_lfw.json

bench: venv ## Face-core and serving benchmarks (JSON under benchmarks/results/)
	$(PY) benchmarks/bench_core.py --out benchmarks/results/core.json
	$(PY) benchmarks/bench_serving.py

bench-lfw: venv ## The 8-fold LFW protocol of the pretrained InceptionResnetV1 and its threshold's calibration (long)
	$(VENV)/bin/faceops verify --pairs $(SHARED)/datasets/lfw/pairs.txt --config configs/preprocess_inception.yaml \
	  --json --roc benchmarks/results/lfw_roc.png \
	  --scores-out benchmarks/results/lfw_scores.csv > benchmarks/results/lfw_8fold.json
	$(PY) benchmarks/calibrate_threshold.py benchmarks/results/lfw_scores.csv

bench-finetune: venv ## Fine-tuned vs pretrained on held-out people and LFW pairs (long)
	$(PY) benchmarks/finetune_vs_pretrained.py --folds 1 2 3 4 5 6 7 8

closed-loop: venv ## Full-size closed loop: serve, degrade traffic, alert, retrain, gate (long)
	$(PY) benchmarks/closed_loop.py

serve: venv ## Serve the MLflow champion (see serving/README.md)
	$(VENV)/bin/faceops serve

monitor: venv ## One monitoring run over the serving logs
	$(VENV)/bin/faceops monitor run -c configs/monitor.yaml

clean: ## Remove outputs (keeps the virtual environment)
	rm -rf outputs .pytest_cache
