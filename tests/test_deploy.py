"""The MWAA packaging (plugins.zip, requirements, startup script, .airflowignore) and the deploy."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import boto3
import deploy_mwaa
import pytest
from botocore.stub import Stubber
from conftest import PROJECT_ROOT

SETTINGS = {"LAKEHOUSE_BUCKET": "ecommerce-lake-prod", "LAKEHOUSE_GLUE_ROLE": "ecommerce-glue"}


@pytest.fixture(scope="module")
def artifacts() -> dict[str, bytes]:
    return {a.key: a.body for a in deploy_mwaa.build(SETTINGS)}


def test_plugins_zip_layout(artifacts):
    names = zipfile.ZipFile(io.BytesIO(artifacts["plugins.zip"])).namelist()
    assert "lakehouse/__init__.py" in names
    assert "lakehouse/targets/aws.py" in names
    assert not [n for n in names if n.startswith("plugins/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_plugins_zip_importable(artifacts, tmp_path):
    zipfile.ZipFile(io.BytesIO(artifacts["plugins.zip"])).extractall(tmp_path)
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import lakehouse.targets.aws, lakehouse.settings as s; print(s.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().startswith(str(tmp_path))


def test_plugins_zip_reproducible():
    first = deploy_mwaa.build_plugins_zip(PROJECT_ROOT / "plugins")
    second = deploy_mwaa.build_plugins_zip(PROJECT_ROOT / "plugins")
    assert first == second


def test_requirements_constraint_line(artifacts):
    text = artifacts["requirements.txt"].decode()
    assert f'--constraint "{deploy_mwaa.CONSTRAINT_URL}"' in text
    assert deploy_mwaa.CONSTRAINT_URL.endswith("constraints-3.3.1/constraints-3.12.txt")
    assert "apache-airflow-providers-amazon==9.34.0" in text


@pytest.mark.parametrize(
    "text",
    [
        "apache-airflow-providers-amazon==9.34.0\n",
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-2.10.3/constraints-3.11.txt"\n',
    ],
)
def test_requirements_without_constraint_rejected(text):
    with pytest.raises(deploy_mwaa.DeployError, match="--constraint"):
        deploy_mwaa.check_requirements(text)


def test_dags_folder_layout(artifacts):
    keys = sorted(k for k in artifacts if k.startswith("dags/"))
    assert "dags/ecommerce_batch_lakehouse.py" in keys
    assert "dags/include/sql/cart_abandonment.sql" in keys
    assert "dags/glue_scripts/raw_to_silver.py" in keys
    assert "dags/.airflowignore" in keys


def test_airflowignore_hides_non_dag_files(artifacts, tmp_path):
    from airflow.utils.file import list_py_file_paths

    for key, body in artifacts.items():
        if key.startswith("dags/"):
            path = tmp_path / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    found = sorted(
        p.removeprefix(str(tmp_path / "dags") + "/")
        for p in list_py_file_paths(tmp_path / "dags", safe_mode=False)
    )
    assert found == sorted(k.removeprefix("dags/") for k in artifacts if k.startswith("dags/ecommerce_"))


def test_settings_found_in_mwaa_dags_folder(artifacts, tmp_path):
    """On MWAA the SQL files and the Glue script are found under the DAGs folder."""
    for key, body in artifacts.items():
        if key.startswith("dags/") or key == "plugins.zip":
            target = tmp_path / "airflow" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
    plugins = tmp_path / "airflow" / "plugins"
    zipfile.ZipFile(tmp_path / "airflow" / "plugins.zip").extractall(plugins)
    code = (
        f"import sys; sys.path.insert(0, {str(plugins)!r}); from lakehouse.settings import Settings; "
        "s = Settings.from_env(); print(s.sql_dir); print(s.glue_scripts_dir)"
    )
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "airflow" / "dags"), "PATH": "/usr/bin:/bin"}
    lines = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert lines == [str(tmp_path / "airflow/dags/include/sql"), str(tmp_path / "airflow/dags/glue_scripts")]


def test_startup_script_exports_settings(artifacts):
    script = artifacts["startup.sh"].decode()
    result = subprocess.run(
        ["sh", "-c", f"{script}\nenv | grep ^LAKEHOUSE_ | sort"],
        capture_output=True,
        text=True,
        check=True,
        env={},
    )
    assert result.stdout.splitlines() == [
        "LAKEHOUSE_BUCKET=ecommerce-lake-prod",
        "LAKEHOUSE_GLUE_ROLE=ecommerce-glue",
        "LAKEHOUSE_TARGET=aws",
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "x"}, "expected a LAKEHOUSE_"),
        ({"LAKEHOUSE_DB_PASSWORD": "x"}, "put secrets in an Airflow connection"),
        ({"LAKEHOUSE_BUCKET": "b; rm -rf /"}, "characters outside"),
        ({"LAKEHOUSE_BUCKET": "$(id)"}, "characters outside"),
    ],
)
def test_startup_script_rejects(settings, message):
    with pytest.raises(deploy_mwaa.DeployError, match=message):
        deploy_mwaa.startup_script(settings)


@pytest.fixture
def moto_s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    yield client
    server.stop()


def test_deploy_uploads_and_updates_environment(moto_s3):
    moto_s3.create_bucket(Bucket="mwaa-bucket")
    moto_s3.put_bucket_versioning(Bucket="mwaa-bucket", VersioningConfiguration={"Status": "Enabled"})
    artifacts = deploy_mwaa.build(SETTINGS)
    # moto has no MWAA API: botocore's Stubber checks the UpdateEnvironment request instead.
    mwaa = boto3.client("mwaa", region_name="us-east-1")
    stubber = Stubber(mwaa)
    stubber.add_response(
        "update_environment", {"Arn": "arn:aws:airflow:us-east-1:123456789012:environment/prod"}, None
    )
    with stubber:
        versions = deploy_mwaa.deploy(
            artifacts, "mwaa-bucket", environment="prod", s3=moto_s3, mwaa=mwaa, out=io.StringIO()
        )
        stubber.assert_no_pending_responses()
    keys = {o["Key"] for o in moto_s3.list_objects_v2(Bucket="mwaa-bucket")["Contents"]}
    assert keys == {a.key for a in artifacts}
    body = moto_s3.get_object(Bucket="mwaa-bucket", Key="plugins.zip", VersionId=versions["plugins.zip"])[
        "Body"
    ].read()
    assert body == next(a.body for a in artifacts if a.key == "plugins.zip")


def test_deploy_update_request_names_versions(moto_s3):
    moto_s3.create_bucket(Bucket="mwaa-bucket")
    moto_s3.put_bucket_versioning(Bucket="mwaa-bucket", VersioningConfiguration={"Status": "Enabled"})
    artifacts = deploy_mwaa.build(SETTINGS)
    mwaa = boto3.client("mwaa", region_name="us-east-1")
    sent = {}
    mwaa.update_environment = lambda **kwargs: sent.update(kwargs)
    versions = deploy_mwaa.deploy(
        artifacts, "mwaa-bucket", environment="prod", s3=moto_s3, mwaa=mwaa, out=io.StringIO()
    )
    assert sent == {
        "Name": "prod",
        "PluginsS3Path": "plugins.zip",
        "RequirementsS3Path": "requirements.txt",
        "StartupScriptS3Path": "startup.sh",
        "PluginsS3ObjectVersion": versions["plugins.zip"],
        "RequirementsS3ObjectVersion": versions["requirements.txt"],
        "StartupScriptS3ObjectVersion": versions["startup.sh"],
    }
    assert all(sent[k] for k in sent)


def test_deploy_unversioned_bucket_fails(moto_s3):
    moto_s3.create_bucket(Bucket="plain-bucket")
    with pytest.raises(deploy_mwaa.DeployError, match="versioned bucket"):
        deploy_mwaa.deploy(
            deploy_mwaa.build(SETTINGS),
            "plain-bucket",
            environment="prod",
            s3=moto_s3,
            mwaa=None,
            out=io.StringIO(),
        )


def test_dry_run_calls_nothing(capsys):
    assert (
        deploy_mwaa.main(
            [
                "--bucket",
                "mwaa-bucket",
                "--environment",
                "prod",
                "--dry-run",
                "--set",
                "LAKEHOUSE_BUCKET=lake",
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "would upload s3://mwaa-bucket/plugins.zip" in output
    assert "would upload s3://mwaa-bucket/dags/ecommerce_batch_lakehouse.py" in output
    assert "would update MWAA environment prod" in output


def test_cli_rejects_bad_setting(capsys):
    assert deploy_mwaa.main(["--bucket", "b", "--dry-run", "--set", "LAKEHOUSE_BUCKET"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
