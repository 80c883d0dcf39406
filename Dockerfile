# Airflow 3.3.1 with what the local target runs on: Java 17 for Spark, and the pinned libraries.
FROM apache/airflow:3.3.1-python3.11

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements-local.txt constraints-local.txt /opt/airflow/
RUN pip install --no-cache-dir -r /opt/airflow/requirements-local.txt -c /opt/airflow/constraints-local.txt
