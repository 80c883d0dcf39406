"""The DAG files import cleanly on both targets, with no AWS credentials and no network."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import PROJECT_ROOT

from lakehouse.settings import GOLD_TABLES

DAG_FOLDER = PROJECT_ROOT / "dags"
TARGETS = ("local", "aws")
EXPECTED_ORDER = [
    "check_landing",
    "crawl_raw",
    "transform_to_silver",
    "check_silver",
    "crawl_silver",
    *[f"build_gold_{t}" for t in GOLD_TABLES],
    "refresh_dashboards",
]


def _fail_on_call(*args, **kwargs):
    raise AssertionError("a DAG file touched the network, a Variable or a Connection while parsed")


@pytest.fixture(params=TARGETS)
def dagbag(request, monkeypatch):
    """Parse the DAG folder for one target with every network call, Variable and Connection refused."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable

    monkeypatch.setenv("LAKEHOUSE_TARGET", request.param)
    monkeypatch.setattr(socket.socket, "connect", _fail_on_call)
    monkeypatch.setattr(Variable, "get", _fail_on_call)
    monkeypatch.setattr(BaseHook, "get_connection", _fail_on_call)
    bag = DagBag(dag_folder=str(DAG_FOLDER))
    bag.target = request.param
    return bag


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "ecommerce_batch_lakehouse" in dagbag.dag_ids


def test_batch_dag_task_order(dagbag):
    dag = dagbag.dags["ecommerce_batch_lakehouse"]
    order = [task.task_id for task in dag.topological_sort()]
    assert order == EXPECTED_ORDER
    for upstream, downstream in itertools.pairwise(EXPECTED_ORDER[:6]):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    for table in GOLD_TABLES:
        assert dag.get_task(f"build_gold_{table}").upstream_task_ids == {"crawl_silver"}
    assert dag.get_task("refresh_dashboards").upstream_task_ids == {f"build_gold_{t}" for t in GOLD_TABLES}


def test_dags_have_tags_retries_and_no_catchup(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.catchup is False, dag.dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"


def test_batch_dag_daily_utc_schedule(dagbag):
    dag = dagbag.dags["ecommerce_batch_lakehouse"]
    from airflow.sdk import CronDataIntervalTimetable

    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 0 * * *"
    assert str(dag.timetable.timezone) == "UTC"
    assert str(dag.start_date.tzinfo) in ("UTC", "+00:00")
    assert dag.max_active_runs == 1


def test_batch_params_have_titles_and_types(dagbag):
    dag = dagbag.dags["ecommerce_batch_lakehouse"]
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("type"), name
        assert param.schema.get("title"), name
        assert param.description, name


def test_both_targets_same_shape():
    """Both targets give the same task ids in the same order."""
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(PROJECT_ROOT / "plugins")!r})
        from airflow.dag_processing.dagbag import DagBag
        out = {{}}
        for target in ("local", "aws"):
            os.environ["LAKEHOUSE_TARGET"] = target
            bag = DagBag(dag_folder={str(DAG_FOLDER)!r})
            dag = bag.dags["ecommerce_batch_lakehouse"]
            out[target] = [t.task_id for t in dag.topological_sort()]
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    shapes = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert shapes["local"] == shapes["aws"] == EXPECTED_ORDER


@pytest.mark.parametrize("target", TARGETS)
def test_dag_file_parse_time_budget(target):
    """A generous guard: the DAG file parses in under 2 s once Airflow itself is imported."""
    script = textwrap.dedent(
        f"""
        import importlib.util, sys, time
        sys.path.insert(0, {str(PROJECT_ROOT / "plugins")!r})
        import airflow.sdk  # noqa: F401  Airflow's own import is not the DAG file's cost
        start = time.perf_counter()
        spec = importlib.util.spec_from_file_location("dag_file", {str(DAG_FOLDER / "ecommerce_batch_lakehouse.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(time.perf_counter() - start)
        """
    )
    env = {**__import__("os").environ, "LAKEHOUSE_TARGET": target}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    seconds = float(result.stdout.strip().splitlines()[-1])
    assert seconds < 2.0, f"{target}: parsing took {seconds:.2f} s"


def test_invalid_target_fails_clearly(monkeypatch):
    from lakehouse.settings import SettingsError, target_name

    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_TARGET 'gcp': expected one of local, aws"):
        target_name({"LAKEHOUSE_TARGET": "gcp"})
