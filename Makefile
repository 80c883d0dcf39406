# Entry points of the project. `make run` and `make test` install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DAY ?= 2019-10-01
SAMPLE := include/data/sample/2019-Oct-first-rows.csv

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export PYTHONPATH := $(CURDIR)/plugins
export LAKEHOUSE_TARGET ?= local
export LAKEHOUSE_LOCAL_ROOT ?= $(CURDIR)/.lake

.PHONY: install run test lint format clean airflow airflow-stop replay replay-stop land

install: $(VENV)/.installed

$(VENV)/.installed: requirements-local.txt constraints-local.txt
	@bin/check-prerequisites
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-local.txt -c constraints-local.txt
	bin/fetch-compose-schema $(VENV)
	touch $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	@$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)

## Run the batch DAG on the local target for DAY (default 2019-10-01) on the shipped real rows.
# A day with no landed files fails after 60 s here, instead of the DAG's 6 hours.
run: export LAKEHOUSE_LANDING_TIMEOUT ?= 60
run: export LAKEHOUSE_LANDING_POKE_INTERVAL ?= 5
run: $(AIRFLOW_HOME)/airflow.db
	@$(BIN)/python -m lakehouse.cli land $(SAMPLE)
	@echo "Running ecommerce_batch_lakehouse for $(DAY); log: $(AIRFLOW_HOME)/dags-test.log"
	@$(BIN)/airflow dags test ecommerce_batch_lakehouse $(DAY) > $(AIRFLOW_HOME)/dags-test.log 2>&1 \
		|| (grep -E "Error|Exception|timed out" $(AIRFLOW_HOME)/dags-test.log | tail -n 5; \
		    echo "DAG run failed; full log: $(AIRFLOW_HOME)/dags-test.log"; exit 1)
	@$(BIN)/python -m lakehouse.cli summary --date $(DAY)

## Land raw Kaggle files (CSV or gzip, any size) into the local lake: make land FILE="a.csv.gz b.csv"
land: $(VENV)/.installed
	@test -n "$(FILE)" || (echo 'usage: make land FILE=path/to/2019-Oct.csv.gz'; exit 2)
	@$(BIN)/python -m lakehouse.cli land $(FILE)

## Stop the local Kinesis endpoint that a replay left running (KEEP_STREAM=1, or a replay from the UI).
replay-stop: $(VENV)/.installed
	@$(BIN)/python -m lakehouse.kinesis_local stop

## Replay DAY of the shipped real rows into a local Kinesis stream (moto on 127.0.0.1) at speed-up
## SPEEDUP (default 0: as fast as it accepts), read them back, then stop the endpoint unless KEEP_STREAM=1.
replay: SPEEDUP ?= 0
replay: $(AIRFLOW_HOME)/airflow.db
	@$(BIN)/python -m lakehouse.cli land $(SAMPLE)
	@echo "Replaying $(DAY) into a local Kinesis stream at speed-up $(SPEEDUP); log: $(AIRFLOW_HOME)/replay-test.log"
	@$(BIN)/airflow dags test ecommerce_stream_replay \
		--conf '{"start": "$(DAY)", "end": "$(DAY)", "speedup": $(SPEEDUP)}' > $(AIRFLOW_HOME)/replay-test.log 2>&1 \
		|| (grep -E "Error|Exception|timed out" $(AIRFLOW_HOME)/replay-test.log | tail -n 5; \
		    $(BIN)/python -m lakehouse.kinesis_local stop > /dev/null; \
		    echo "DAG run failed; full log: $(AIRFLOW_HOME)/replay-test.log"; exit 1)
	@grep -oE "Replay into .* finished: .*sources \{[^}]*\}|Reconciled stream .* unexpected [0-9]+" $(AIRFLOW_HOME)/replay-test.log
	@$(BIN)/python -m lakehouse.kinesis_local $(if $(KEEP_STREAM),status,stop)

## Run the test suite.
test: $(VENV)/.installed
	@bin/ensure-chromium
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	@# The local Kinesis endpoint is recorded in the lake: stop it before the record goes.
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m lakehouse.kinesis_local stop; fi
	rm -rf .lake .airflow

## Start a local Airflow 3 (UI on http://127.0.0.1:8080) with this package; Ctrl-C stops it.
airflow: $(VENV)/.installed
	$(BIN)/python bin/airflow-local start

airflow-stop:
	$(BIN)/python bin/airflow-local stop
