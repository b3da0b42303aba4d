# The two commands: `make nightly` runs the pipeline once, `make test` runs every check.
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1   # the ephemeral server otherwise prints a telemetry notice on every run
# the ephemeral API's start-up waits 20 s by default: too short on a loaded 2-core machine
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_LEVEL ?= INFO
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export TQDM_DISABLE := 1
export PREFECT_LOGGING_EXTRA_LOGGERS := pipeline
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW := ignore

# Test processes: files are spread over them whole (a file's tests share fixtures and run in
# order); tests/conftest.py starts the longest files first. 0 runs everything in this process.
TEST_WORKERS ?= 2

# A model another run is compressing (cron and a manual trigger overlap): wait for it, or skip it
ON_BUSY ?= wait

.PHONY: setup nightly test lint repro push pull

setup:
	@scripts/bootstrap.sh

nightly: setup  ## run the nightly flow once on the embedded default (ephemeral Prefect, local S3); MODELS="a b" picks models
	$(BIN)/python -m flows.nightly --on-busy $(ON_BUSY) $(MODELS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint  ## lint, type-check, layering contract, then the test suite on TEST_WORKERS processes
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

repro: setup  ## the same stages through DVC (dvc.yaml written from the stage declarations), embedded S3 up throughout
	$(BIN)/python -m tasks dvc-yaml
	$(BIN)/python -m tasks.storage.with_s3 -- $(BIN)/dvc repro

push: setup  ## push data versions to the DVC remote on the (embedded) S3
	$(BIN)/python -m tasks.storage.with_s3 -- $(BIN)/dvc push

pull: setup  ## pull data versions from the DVC remote
	$(BIN)/python -m tasks.storage.with_s3 -- $(BIN)/dvc pull
