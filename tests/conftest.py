"""Test setup: a private Airflow home, no AWS credentials, and no network but loopback.

The environment is set before anything imports Airflow, because Airflow reads its configuration
once, at import.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_OCT = PROJECT_ROOT / "include" / "data" / "sample" / "2019-Oct-first-rows.csv"
SAMPLE_NOV = PROJECT_ROOT / "include" / "data" / "sample" / "2019-Nov-first-rows-no-header.csv"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="lakehouse-test-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "LAKEHOUSE_TARGET": "local",
        "LAKEHOUSE_LOCAL_ROOT": str(_AIRFLOW_HOME / "lake"),
        "LAKEHOUSE_RETRY_DELAY": "1",
        # Botocore must find no credentials and no profile of this machine.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYSPARK_PYTHON": sys.executable,
    }
)
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
    os.environ.pop(_name, None)
sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
# py4j logs from a finalizer at interpreter exit, after pytest closed the log stream.
logging.getLogger("py4j").setLevel(logging.WARNING)

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"tests may only connect to loopback, not {host!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection of the test process to a host other than this machine."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty local lake for one test, set as the lake of the local target."""
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv("LAKEHOUSE_LOCAL_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole run: starting the JVM takes seconds."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("Java 17 is required for the Spark tests: install openjdk-17-jre-headless")
    from lakehouse.targets.local import local_spark_session

    session = local_spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the Airflow metadata database once, for tests that run a DAG."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
