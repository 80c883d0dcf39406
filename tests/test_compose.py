"""docker-compose.yaml against the Compose Specification, since no Docker engine runs here."""

from __future__ import annotations

import copy
import json
import os

import jsonschema
import pytest
import yaml
from conftest import PROJECT_ROOT

SCHEMA = PROJECT_ROOT / ".venv" / "share" / "compose-spec" / "compose-spec.json"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    path = os.environ.get("COMPOSE_SPEC_SCHEMA", str(SCHEMA))
    if not os.path.exists(path):
        pytest.fail(f"Compose schema not found at {path}: run `bin/fetch-compose-schema .venv`")
    with open(path) as stream:
        return json.load(stream)


def test_compose_matches_specification(compose, schema):
    jsonschema.validate(compose, schema)


def test_specification_rejects_typo(compose, schema):
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["healthcheck"]["intervall"] = "10s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(broken, schema)


def test_compose_has_airflow3_services(compose):
    services = compose["services"]
    for name in (*AIRFLOW_SERVICES, "postgres", "airflow-init"):
        assert name in services, name
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }


def test_compose_mounts_package(compose):
    for name in AIRFLOW_SERVICES:
        volumes = compose["services"][name]["volumes"]
        for folder in ("dags", "plugins", "include", "glue_scripts"):
            assert f"./{folder}:/opt/airflow/{folder}" in volumes, (name, folder)


def test_compose_ports_on_loopback(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_aws_emulator_optional(compose):
    emulator = compose["services"]["aws-emulator"]
    assert emulator["profiles"] == ["aws-emulator"]
    assert emulator["image"].startswith("motoserver/moto:")
    env_file = (PROJECT_ROOT / "deploy" / "compose-aws-emulator.env").read_text()
    assert "LAKEHOUSE_TARGET=aws" in env_file
    assert "http://aws-emulator:5000" in env_file


def test_compose_images_pinned(compose):
    images = [s["image"] for s in compose["services"].values() if "image" in s]
    assert all(":" in image and not image.endswith(":latest") for image in images), images
    assert "FROM apache/airflow:3.3.1-python3.11" in (PROJECT_ROOT / "Dockerfile").read_text()
