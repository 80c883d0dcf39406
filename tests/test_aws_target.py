"""The ``aws`` target of the batch DAG, run with ``dag.test()`` against moto's server on 127.0.0.1.

Every AWS call goes over HTTP to the moto server, and the tests then read back from it what
reached AWS: the uploaded Glue script and its arguments, the crawler configs, the SQL sent to
Athena, the published gold partitions. Where moto lacks an API or a service's side effect, the
test stands in for it and names the stand-in:

* QuickSight ``DescribeIngestion`` is not in moto: ``QuickSightHook.get_status`` is patched;
* Athena CTAS does not create a table in moto: ``AthenaHook.run_query`` is wrapped to add, after
  the real call, the staging table and files that Athena would have written;
* the Glue job does not run the script in moto: the test writes the job's metrics file, and
  queues the counts that Athena returns for the data-quality queries.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from datetime import UTC, datetime
from unittest import mock

import boto3
import pytest
from conftest import PROJECT_ROOT, SAMPLE_OCT

from lakehouse.gold import plan_ctas
from lakehouse.landing import EXPECTED_HEADER
from lakehouse.settings import GOLD_TABLES

pytestmark = pytest.mark.e2e

BUCKET = "ecommerce-lake-test"
DATABASE = "ecommerce_lakehouse"
ROLE = "ecommerce-glue-role"
DAY = "2019-10-01"
DAG_FILE = PROJECT_ROOT / "dags" / "ecommerce_batch_lakehouse.py"
SILVER_COLUMNS = [
    ("event_id", "string"),
    ("event_time", "timestamp"),
    ("event_type", "string"),
    ("product_id", "bigint"),
    ("category_id", "bigint"),
    ("category_code", "string"),
    ("category_l1", "string"),
    ("category_l2", "string"),
    ("category_l3", "string"),
    ("brand", "string"),
    ("price", "decimal(12,2)"),
    ("user_id", "bigint"),
    ("user_session", "string"),
    ("event_hour", "int"),
    ("day_of_week", "int"),
]


@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _moto_api(endpoint: str, path: str, body: dict) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture
def aws(moto_server, monkeypatch, tmp_path):
    """Point the aws target at moto and create what the infrastructure template would."""
    monkeypatch.setenv("LAKEHOUSE_TARGET", "aws")
    monkeypatch.setenv("LAKEHOUSE_BUCKET", BUCKET)
    monkeypatch.setenv("LAKEHOUSE_GLUE_ROLE", ROLE)
    monkeypatch.setenv("LAKEHOUSE_LANDING_TIMEOUT", "60")
    monkeypatch.setenv("LAKEHOUSE_LANDING_POKE_INTERVAL", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "extra": {"endpoint_url": moto_server, "region_name": "us-east-1"}}),
    )
    for model in ("glue::crawl", "glue::job_run"):
        _moto_api(
            moto_server,
            "state-manager/set-transition",
            {"model_name": model, "transition": {"progression": "immediate"}},
        )
    _moto_api(moto_server, "reset", {})
    clients = {
        name: boto3.client(name, endpoint_url=moto_server, region_name="us-east-1")
        for name in ("s3", "glue", "iam", "athena")
    }
    clients["s3"].create_bucket(Bucket=BUCKET)
    clients["iam"].create_role(RoleName=ROLE, AssumeRolePolicyDocument="{}")
    clients["glue"].create_database(DatabaseInput={"Name": DATABASE})
    clients["athena"].create_work_group(
        Name="ecommerce_lakehouse",
        Configuration={
            "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"},
            "EnforceWorkGroupConfiguration": True,
        },
    )
    clients["endpoint"] = moto_server
    return clients


def land(s3, body: bytes, name: str = "2019-Oct-first-rows.csv") -> str:
    key = f"landing/events/event_date={DAY}/{name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def real_rows_landed() -> bytes:
    text = SAMPLE_OCT.read_bytes().replace(b"\r\n", b"\n")
    assert text.startswith(EXPECTED_HEADER.encode())
    return text


def prepare_glue_outputs(clients) -> None:
    """Write what the Glue job and the silver crawler leave behind, which moto cannot produce."""
    metrics = {"rows_in": 17435, "silver_rows": 17429, "quarantined_rows": 1, "duplicates_dropped": 5}
    clients["s3"].put_object(
        Bucket=BUCKET,
        Key=f"metrics/raw_to_silver/event_date={DAY}/part-00000.txt",
        Body=json.dumps({"event_date": DAY, **metrics}).encode(),
    )
    clients["glue"].create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": "silver_events",
            "StorageDescriptor": {
                "Columns": [{"Name": n, "Type": t} for n, t in SILVER_COLUMNS],
                "Location": f"s3://{BUCKET}/silver/events/",
            },
            "PartitionKeys": [{"Name": "event_date", "Type": "string"}],
        },
    )
    header = {"Data": [{"VarCharValue": "count"}]}
    results = [
        {"rows": [header, {"Data": [{"VarCharValue": "17435"}]}]},
        {"rows": [header, {"Data": [{"VarCharValue": v} for v in ("17429", "0", "0", "0", "0", "0")]}]},
    ]
    _moto_api(clients["endpoint"], "static/athena/query-results", {"results": results})


def emulate_ctas(clients):
    """Wrap ``AthenaHook.run_query``: after the real call, add the table and files a CTAS makes."""
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    original = AthenaHook.run_query

    def run_query(self, query, *args, **kwargs):
        query_id = original(self, query, *args, **kwargs)
        if query.lstrip().startswith(("CREATE TABLE", "--")) and "CREATE TABLE" in query:
            plan = plan_ctas(query)
            database, table = plan.table.split(".")
            location = plan.location.rstrip("/")
            clients["glue"].create_table(
                DatabaseName=database,
                TableInput={
                    "Name": table,
                    "StorageDescriptor": {"Columns": [{"Name": "n", "Type": "bigint"}], "Location": location},
                    "PartitionKeys": [{"Name": "event_date", "Type": "date"}],
                },
            )
            clients["glue"].create_partition(
                DatabaseName=database,
                TableName=table,
                PartitionInput={
                    "Values": [DAY],
                    "StorageDescriptor": {"Location": f"{location}/event_date={DAY}"},
                },
            )
            bucket, _, prefix = location.removeprefix("s3://").partition("/")
            clients["s3"].put_object(
                Bucket=bucket, Key=f"{prefix}/event_date={DAY}/part-0.parquet", Body=b"PAR1"
            )
        return query_id

    return mock.patch.object(AthenaHook, "run_query", run_query)


def load_dag():
    spec = importlib.util.spec_from_file_location("batch_dag_aws", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_dag(clients):
    from airflow.providers.amazon.aws.hooks.quicksight import QuickSightHook

    ingestions = []
    original = QuickSightHook.create_ingestion

    def create_ingestion(self, data_set_id, ingestion_id, *args, **kwargs):
        ingestions.append((data_set_id, ingestion_id))
        return original(self, data_set_id, ingestion_id, *args, **kwargs)

    with (
        emulate_ctas(clients),
        # moto has no DescribeIngestion: the ingestion is reported complete.
        mock.patch.object(QuickSightHook, "get_status", return_value="COMPLETED"),
        mock.patch.object(QuickSightHook, "create_ingestion", create_ingestion),
    ):
        dag_run = load_dag().test(logical_date=datetime(2019, 10, 1, tzinfo=UTC))
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return str(dag_run.state), states, ingestions


@pytest.fixture
def first_run(aws, airflow_db):
    land(aws["s3"], real_rows_landed())
    prepare_glue_outputs(aws)
    state, states, ingestions = run_dag(aws)
    return {"state": state, "states": states, "ingestions": ingestions, **aws}


def test_aws_dag_succeeds(first_run):
    assert first_run["state"] == "success", first_run["states"]
    assert set(first_run["states"].values()) == {"success"}, first_run["states"]


def test_glue_script_uploaded_unchanged(first_run):
    body = (
        first_run["s3"]
        .get_object(Bucket=BUCKET, Key="artifacts/glue-scripts/raw_to_silver.py")["Body"]
        .read()
    )
    assert body == (PROJECT_ROOT / "glue_scripts" / "raw_to_silver.py").read_bytes()


def test_glue_job_definition_and_arguments(first_run):
    import raw_to_silver

    job = first_run["glue"].get_job(JobName="ecommerce_raw_to_silver")["Job"]
    assert job["GlueVersion"] == "5.1"
    assert job["Command"]["ScriptLocation"] == f"s3://{BUCKET}/artifacts/glue-scripts/raw_to_silver.py"
    assert job["WorkerType"] == "G.1X"
    assert job["NumberOfWorkers"] == 2
    assert job["Role"].endswith(f"role/{ROLE}")
    (job_run,) = first_run["glue"].get_job_runs(JobName="ecommerce_raw_to_silver")["JobRuns"]
    arguments = job_run["Arguments"]
    for name in raw_to_silver.REQUIRED_ARGUMENTS:
        assert f"--{name}" in arguments, name
    assert arguments["--landing_path"] == f"s3://{BUCKET}/landing/events/event_date={DAY}"
    assert arguments["--silver_path"] == f"s3://{BUCKET}/silver/events"
    assert arguments["--event_date"] == DAY
    # The script's own parser accepts exactly what the job received.
    parsed = raw_to_silver.parse_arguments([x for pair in arguments.items() for x in pair])
    assert parsed["quarantine_path"] == f"s3://{BUCKET}/quarantine/events"


def test_crawler_configs(first_run):
    for table, folder in (("raw", "landing/events/"), ("silver", "silver/events/")):
        crawler = first_run["glue"].get_crawler(Name=f"{DATABASE}_{table}_events")["Crawler"]
        assert crawler["DatabaseName"] == DATABASE
        assert crawler["TablePrefix"] == f"{table}_"
        (target,) = crawler["Targets"]["S3Targets"]
        assert target["Path"] == f"s3://{BUCKET}/{folder}"
        configuration = json.loads(crawler["Configuration"])
        assert configuration["Grouping"]["TableGroupingPolicy"] == "CombineCompatibleSchemas"
        assert crawler["RecrawlPolicy"]["RecrawlBehavior"] == "CRAWL_NEW_FOLDERS_ONLY"


def _queries(athena) -> list[dict]:
    ids = athena.list_query_executions()["QueryExecutionIds"]
    return [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]


def test_athena_sql_sent(first_run):
    queries = _queries(first_run["athena"])
    ctas = {
        q["Query"].split("CREATE TABLE ", 1)[1].split("__stage_", 1)[0]: q
        for q in queries
        if "CREATE TABLE" in q["Query"]
    }
    assert sorted(ctas) == sorted(f"{DATABASE}.{t}" for t in GOLD_TABLES)
    for table in GOLD_TABLES:
        query = ctas[f"{DATABASE}.{table}"]
        sql_file = (PROJECT_ROOT / "include" / "sql" / f"{table}.sql").read_text()
        # The first line of each file is its comment, sent as written.
        assert query["Query"].splitlines()[0] == sql_file.splitlines()[0]
        assert f"external_location = 's3://{BUCKET}/gold/_runs/{table}/" in query["Query"]
        assert f"FROM {DATABASE}.silver_events" in query["Query"]
        assert f"DATE '{DAY}'" in query["Query"]
        assert query["WorkGroup"] == "ecommerce_lakehouse"
        assert query["ResultConfiguration"]["OutputLocation"].startswith(f"s3://{BUCKET}/athena-results/")
    checks = [q["Query"] for q in queries if "CREATE TABLE" not in q["Query"]]
    assert any(f"FROM raw_events WHERE event_date = '{DAY}'" in q for q in checks)
    assert any("COUNT(*) - COUNT(DISTINCT event_id)" in q for q in checks)


def test_gold_partitions_published(first_run):
    glue, s3 = first_run["glue"], first_run["s3"]
    tables = {t["Name"] for t in glue.get_tables(DatabaseName=DATABASE)["TableList"]}
    assert set(GOLD_TABLES) <= tables
    assert not [t for t in tables if "__stage_" in t], tables
    for table in GOLD_TABLES:
        (partition,) = glue.get_partitions(DatabaseName=DATABASE, TableName=table)["Partitions"]
        assert partition["Values"] == [DAY]
        location = partition["StorageDescriptor"]["Location"]
        assert location.startswith(f"s3://{BUCKET}/gold/_runs/{table}/")
        key = location.removeprefix(f"s3://{BUCKET}/") + "/part-0.parquet"
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 4


def test_quicksight_ingestion_ids(first_run):
    ingestions = sorted(first_run["ingestions"])
    assert [d for d, _ in ingestions] == sorted(f"ecommerce_{t}" for t in GOLD_TABLES)
    for _dataset, ingestion in ingestions:
        assert len(ingestion) <= 128
        assert all(c.isalnum() or c in "-_" for c in ingestion), ingestion
        assert ingestion.endswith("-try1")
    assert len({i for _, i in ingestions}) == len(GOLD_TABLES)


def test_rerun_keeps_one_copy(first_run, aws):
    before = {
        t: aws["glue"].get_partitions(DatabaseName=DATABASE, TableName=t)["Partitions"][0][
            "StorageDescriptor"
        ]["Location"]
        for t in GOLD_TABLES
    }
    header = {"Data": [{"VarCharValue": "count"}]}
    results = [
        {"rows": [header, {"Data": [{"VarCharValue": "17435"}]}]},
        {"rows": [header, {"Data": [{"VarCharValue": v} for v in ("17429", "0", "0", "0", "0", "0")]}]},
    ]
    _moto_api(aws["endpoint"], "static/athena/query-results", {"results": results})
    state, states, _ = run_dag(aws)
    assert state == "success", states
    for table in GOLD_TABLES:
        (partition,) = aws["glue"].get_partitions(DatabaseName=DATABASE, TableName=table)["Partitions"]
        location = partition["StorageDescriptor"]["Location"]
        assert location != before[table]
        keys = [
            o["Key"]
            for o in aws["s3"]
            .list_objects_v2(Bucket=BUCKET, Prefix=f"gold/_runs/{table}/")
            .get("Contents", [])
        ]
        assert keys == [location.removeprefix(f"s3://{BUCKET}/") + "/part-0.parquet"], keys


def test_bad_header_fails_landing(aws, airflow_db):
    key = land(aws["s3"], b"event_time,event_type,product_id\n2019-10-01 00:00:00 UTC,view,1\n", "other.csv")
    state, states, _ = run_dag(aws)
    assert state == "failed"
    assert states["check_landing"] == "failed"
    assert states["transform_to_silver"] == "upstream_failed"
    assert "Jobs" not in aws["glue"].get_jobs() or not aws["glue"].get_jobs()["Jobs"]
    assert key


def test_landing_check_message_names_object(aws):
    from airflow.sdk.exceptions import AirflowFailException

    from lakehouse.targets.aws import check_landing_objects

    key = land(aws["s3"], b"event_time,event_type,product_id\n2019-10-01 00:00:00 UTC,view,1\n", "other.csv")
    files = [{"Key": key, "Size": 40}]
    with pytest.raises(AirflowFailException) as error:
        check_landing_objects(files, params={"event_date": DAY})
    assert f"s3://{BUCKET}/{key}" in str(error.value)
    assert EXPECTED_HEADER in str(error.value)


def test_landing_check_reads_first_bytes_only(aws):
    from lakehouse.targets.aws import check_landing_objects

    key = land(aws["s3"], real_rows_landed())
    # Spy on the S3 GetObject calls through the hook instead of botocore internals.
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    original_get_key = S3Hook.get_key
    ranges = []

    def get_key(self, key, bucket_name=None):
        obj = original_get_key(self, key, bucket_name)
        real_get = obj.get

        def get(**kwargs):
            ranges.append(kwargs.get("Range"))
            return real_get(**kwargs)

        obj.get = get
        return obj

    with mock.patch.object(S3Hook, "get_key", get_key):
        assert check_landing_objects([{"Key": key, "Size": 2_000_000}], params={"event_date": DAY}) is True
    assert ranges == ["bytes=0-65535"]


@pytest.mark.parametrize(
    ("key", "matches"),
    [
        (f"landing/events/event_date={DAY}/a.csv", True),
        (f"landing/events/event_date={DAY}/a.csv.gz", True),
        (f"landing/events/event_date={DAY}/nested/a.csv", False),
        (f"landing/events/event_date={DAY}0/a.csv", False),
        (f"landing/events/event_date={DAY}/_SUCCESS", False),
        (f"landing/events/event_date={DAY}/.a.csv.partial", False),
        (f"landing/events/event_date={DAY}/a.csv.bak", False),
    ],
)
def test_day_pattern_anchored(key, matches):
    from lakehouse.targets.aws import is_day_file

    assert is_day_file(key, DAY) is matches


def test_sensor_timeout_message(aws, monkeypatch):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from lakehouse.targets.aws import LandingKeySensor, check_landing_objects

    sensor = LandingKeySensor(
        task_id="check_landing",
        bucket_name=BUCKET,
        bucket_key=f"landing/events/event_date={DAY}/*.csv*",
        wildcard_match=True,
        check_fn=check_landing_objects,
        timeout=1,
        poke_interval=0.2,
        deferrable=False,
    )
    with pytest.raises(AirflowSensorTimeout) as error:
        sensor.execute(
            {"params": {"event_date": DAY}, "ti": mock.MagicMock(), "task_instance": mock.MagicMock()}
        )
    assert f"waiting for landing files of {DAY} under s3://{BUCKET}/landing/events/event_date={DAY}/" in str(
        error.value
    )


def test_ingestion_already_running_is_clear(aws):
    from airflow.providers.amazon.aws.hooks.quicksight import QuickSightHook
    from airflow.sdk.exceptions import AirflowException
    from botocore.exceptions import ClientError

    from lakehouse.targets.aws import DashboardIngestionOperator

    refused = ClientError(
        {"Error": {"Code": "LimitExceededException", "Message": "ingestion in progress"}}, "CreateIngestion"
    )
    operator = DashboardIngestionOperator(
        task_id="refresh_dashboards", data_set_id="ecommerce_brand_marketing", ingestion_id="brand-run-1-try1"
    )
    # moto has no concurrent-ingestion rule: the hook method raises QuickSight's error.
    with (
        mock.patch.object(QuickSightHook, "create_ingestion", side_effect=refused),
        pytest.raises(AirflowException) as error,
    ):
        operator.execute({})
    assert "dataset ecommerce_brand_marketing is already running" in str(error.value)
    assert "brand-run-1-try1" in str(error.value)


@pytest.mark.parametrize("lost_xcom", [False, True])
def test_glue_retry_reuses_running_job(aws, lost_xcom):
    """A retry finds the first try's run still RUNNING and waits on it instead of starting one."""
    from lakehouse.targets.aws import AwsTarget

    # Keep job runs RUNNING until described 1000 times.
    _moto_api(
        aws["endpoint"],
        "state-manager/set-transition",
        {"model_name": "glue::job_run", "transition": {"progression": "manual", "times": 1000}},
    )
    operator = AwsTarget().transform_to_silver("transform_to_silver")
    # The values the templates render to for 2019-10-01; rendering needs a whole DAG run.
    operator.job_name = "ecommerce_raw_to_silver"
    operator.s3_bucket = BUCKET
    operator.iam_role_name = ROLE
    operator.aws_conn_id = "aws_default"
    operator.script_args = {
        "--event_date": DAY,
        "--landing_path": f"s3://{BUCKET}/landing/events/event_date={DAY}",
    }
    operator.deferrable = False
    operator.wait_for_completion = False
    assert operator.resume_glue_job_on_retry is True
    pushed = {}

    def ti(try_number):
        fake = mock.MagicMock(
            dag_id="ecommerce_batch_lakehouse", task_id="transform_to_silver", run_id="r1", map_index=-1
        )
        fake.try_number = try_number
        fake.xcom_pull.side_effect = lambda **kwargs: None if lost_xcom else pushed.get("glue_job_run_id")
        fake.xcom_push.side_effect = lambda key, value: pushed.__setitem__(key, value)
        return fake

    first = operator.execute({"ti": ti(1), "task_instance": ti(1)})
    operator._job_run_id = None
    second = operator.execute({"ti": ti(2), "task_instance": ti(2)})
    runs = aws["glue"].get_job_runs(JobName="ecommerce_raw_to_silver")["JobRuns"]
    assert len(runs) == 1
    assert second == first == runs[0]["Id"]
    _moto_api(
        aws["endpoint"],
        "state-manager/set-transition",
        {"model_name": "glue::job_run", "transition": {"progression": "immediate"}},
    )
