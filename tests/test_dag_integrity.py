"""The DAG files import cleanly on both targets, with no AWS credentials and no network."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import PROJECT_ROOT

from lakehouse.settings import GOLD_TABLES, Settings, SettingsError

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


def task_shapes(dag_id: str) -> dict[str, list[list[str]]]:
    """Return each target's ``[task_id, operator class]`` list, topologically sorted.

    Each target is loaded in a fresh process because ``LAKEHOUSE_TARGET`` is read at import.
    """
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(PROJECT_ROOT / "plugins")!r})
        from airflow.dag_processing.dagbag import DagBag
        out = {{}}
        for target in ("local", "aws"):
            os.environ["LAKEHOUSE_TARGET"] = target
            bag = DagBag(dag_folder={str(DAG_FOLDER)!r})
            dag = bag.dags[{dag_id!r}]
            out[target] = [[t.task_id, type(t).__name__] for t in dag.topological_sort()]
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_both_targets_same_shape():
    """Both targets give the same task ids in the same order."""
    shapes = task_shapes("ecommerce_batch_lakehouse")
    local = [task_id for task_id, _ in shapes["local"]]
    aws = [task_id for task_id, _ in shapes["aws"]]
    assert local == aws == EXPECTED_ORDER


@pytest.mark.parametrize("dag_file", ["ecommerce_batch_lakehouse.py", "ecommerce_stream_replay.py"])
@pytest.mark.parametrize("target", TARGETS)
def test_dag_file_parse_time_budget(target, dag_file):
    """A generous guard: each DAG file parses in under 2 s once Airflow itself is imported."""
    script = textwrap.dedent(
        f"""
        import importlib.util, sys, time
        sys.path.insert(0, {str(PROJECT_ROOT / "plugins")!r})
        import airflow.sdk  # noqa: F401  Airflow's own import is not the DAG file's cost
        start = time.perf_counter()
        spec = importlib.util.spec_from_file_location("dag_file", {str(DAG_FOLDER / dag_file)!r})
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
    assert seconds < 2.0, f"{dag_file} on {target}: parsing took {seconds:.2f} s"


def test_invalid_target_fails_clearly(monkeypatch):
    from lakehouse.settings import SettingsError, target_name

    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_TARGET 'gcp': expected one of local, aws"):
        target_name({"LAKEHOUSE_TARGET": "gcp"})


STREAM_DAG_ID = "ecommerce_stream_replay"
STREAM_ORDER = ["ensure_stream", "start_analytics_app", "replay_events", "reconcile"]


def test_stream_dag_imports(dagbag):
    assert dagbag.import_errors == {}
    assert STREAM_DAG_ID in dagbag.dag_ids


def test_stream_dag_task_order(dagbag):
    dag = dagbag.dags[STREAM_DAG_ID]
    assert [task.task_id for task in dag.topological_sort()] == STREAM_ORDER
    for upstream, downstream in itertools.pairwise(STREAM_ORDER):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    # A skipped Flink step (none configured, or the local target) must not skip the replay.
    assert dag.get_task("replay_events").trigger_rule == "none_failed"
    assert dag.get_task("reconcile").trigger_rule == "all_success"


def test_stream_dag_manual_only(dagbag):
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    dag = dagbag.dags[STREAM_DAG_ID]
    assert isinstance(dag.timetable, NullTimetable)
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md
    assert "streaming" in dag.tags


def test_stream_params_typed_with_limits(dagbag):
    dag = dagbag.dags[STREAM_DAG_ID]
    assert set(dag.params) == {"start", "end", "speedup", "max_events", "stream_name"}
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("type"), name
        assert param.schema.get("title"), name
        assert param.description, name
    speedup = dag.params.get_param("speedup").schema
    assert (speedup["minimum"], speedup["maximum"]) == (0, 3600)
    assert dag.params.get_param("max_events").schema["minimum"] == 1
    stream_name = dag.params.get_param("stream_name")
    assert stream_name.resolve("") == ""
    assert stream_name.resolve("ecommerce-events.v2") == "ecommerce-events.v2"
    for bound in ("start", "end"):
        assert dag.params.get_param(bound).schema["pattern"].startswith(r"^\d{4}-\d{2}-\d{2}")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("speedup", -1),
        ("speedup", 3601),
        ("max_events", 0),
        ("stream_name", "has space"),
        ("stream_name", "x" * 129),
        ("stream_name", ".."),
        ("start", "2019-10-01T00:00:00+02:00"),
        ("end", "tomorrow"),
    ],
)
def test_stream_params_reject_invalid(dagbag, name, value):
    from airflow.sdk.definitions.param import ParamValidationError

    param = dagbag.dags[STREAM_DAG_ID].params.get_param(name)
    with pytest.raises(ParamValidationError):
        param.resolve(value)


def test_stream_dag_both_targets_same_shape():
    """Both targets give the stream DAG the same task ids in the same order."""
    shapes = task_shapes(STREAM_DAG_ID)
    assert [task_id for task_id, _ in shapes["local"]] == STREAM_ORDER
    assert [task_id for task_id, _ in shapes["aws"]] == STREAM_ORDER
    assert dict(shapes["aws"])["start_analytics_app"] == "AwsStartAnalyticsAppOperator"


def test_spark_driver_memory_setting():
    assert Settings.from_env({}).spark_driver_memory == "4g"
    assert Settings.from_env({"LAKEHOUSE_SPARK_DRIVER_MEMORY": "512M"}).spark_driver_memory == "512m"
    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_SPARK_DRIVER_MEMORY 'lots'"):
        Settings.from_env({"LAKEHOUSE_SPARK_DRIVER_MEMORY": "lots"})
