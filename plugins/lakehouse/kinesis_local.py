"""A Kinesis-compatible endpoint on 127.0.0.1 for the local target: moto's server in a subprocess.

Under a scheduler each task runs in its own process, so the server must outlive the task that
starts it. ``ensure_endpoint`` starts it in its own session and writes its host, port and pid to
``<lake>/kinesis/endpoint.json``; later tasks reuse it while that pid is alive and the port
accepts connections. moto keeps streams in memory: when the server stops, its streams and records are gone.

``python -m lakehouse.kinesis_local status|stop`` shows or stops the server of the lake set by
``LAKEHOUSE_LOCAL_ROOT``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# moto accepts any credentials and region; fixed ones keep the client off the machine's config.
REGION = "us-east-1"
ENDPOINT_FILE = "endpoint.json"
LOG_FILE = "moto-server.log"


class EndpointError(RuntimeError):
    """The local Kinesis endpoint is not running, or did not start."""


@dataclass(frozen=True)
class LocalEndpoint:
    """Address and process id of a running local server."""

    host: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    # A recycled pid would belong to another program; /proc exists on Linux only.
    if cmdline.exists():
        try:
            return b"moto" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def read_endpoint(folder: Path) -> LocalEndpoint | None:
    """Return the endpoint recorded in ``folder`` when its server is alive, else None."""
    path = folder / ENDPOINT_FILE
    try:
        endpoint = LocalEndpoint(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if endpoint.host != HOST or not _pid_alive(endpoint.pid) or not _port_open(endpoint.host, endpoint.port):
        return None
    return endpoint


def find_endpoint(folder: Path) -> LocalEndpoint:
    """Return the running endpoint, or raise ``EndpointError`` saying how to start one."""
    endpoint = read_endpoint(folder)
    if endpoint is None:
        raise EndpointError(
            f"no local Kinesis endpoint is running (none alive in {folder / ENDPOINT_FILE}); "
            "run the ensure_stream task again, which starts it and creates the stream"
        )
    return endpoint


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _lock(folder: Path):
    # Two tasks starting at once must not start two servers for one lake.
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".endpoint.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_endpoint(folder: Path, port: int = 0, timeout_seconds: float = 30.0) -> tuple[LocalEndpoint, bool]:
    """Return the running endpoint of this lake, starting moto's server when none is alive.

    :param port: TCP port on 127.0.0.1; 0 picks a free one.
    :return: the endpoint, and whether this call started it.
    """
    with _lock(folder):
        endpoint = read_endpoint(folder)
        if endpoint is not None:
            return endpoint, False
        port = port or _free_port()
        if _port_open(HOST, port):
            raise EndpointError(
                f"port {port} on {HOST} is taken by another program; set LAKEHOUSE_KINESIS_LOCAL_PORT "
                "to a free port, or 0 to pick one"
            )
        log_path = folder / LOG_FILE
        with log_path.open("ab") as log:
            # A new session: the server must not die with the task's process group.
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout_seconds
        while not _port_open(HOST, port):
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.terminate()
                tail = log_path.read_text(errors="replace")[-2000:]
                raise EndpointError(
                    f"moto server on {HOST}:{port} did not start within {timeout_seconds:.0f} s "
                    f"(exit code {process.poll()}); end of {log_path}:\n{tail}"
                )
            time.sleep(0.1)
        endpoint = LocalEndpoint(HOST, port, process.pid)
        partial = folder / f".{ENDPOINT_FILE}.partial"
        partial.write_text(json.dumps(asdict(endpoint)))
        partial.replace(folder / ENDPOINT_FILE)
        return endpoint, True


def stop_endpoint(folder: Path, timeout_seconds: float = 10.0) -> LocalEndpoint | None:
    """Stop the server recorded in ``folder`` by its pid; return it, or None when none was alive."""
    with _lock(folder):
        endpoint = read_endpoint(folder)
        (folder / ENDPOINT_FILE).unlink(missing_ok=True)
        if endpoint is None:
            return None
        os.kill(endpoint.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                # Reap it when this process started it, so no zombie is left behind.
                os.waitpid(endpoint.pid, os.WNOHANG)
            try:
                os.kill(endpoint.pid, 0)
            except ProcessLookupError:
                return endpoint
            time.sleep(0.05)
        os.kill(endpoint.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(endpoint.pid, 0)
        return endpoint


def kinesis_client(endpoint: LocalEndpoint) -> Any:
    """Return a boto3 Kinesis client for the local endpoint, with dummy credentials."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kinesis",
        endpoint_url=endpoint.url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lakehouse.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.kinesis_local", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=("status", "stop"))
    arguments = parser.parse_args(argv)
    folder = Path(Settings.from_env().lake.kinesis_local_dir)
    if arguments.command == "status":
        endpoint = read_endpoint(folder)
        print(f"local Kinesis endpoint: {endpoint.url} (pid {endpoint.pid})" if endpoint else "not running")
        return 0
    stopped = stop_endpoint(folder)
    print(
        f"stopped the local Kinesis endpoint {stopped.url} (pid {stopped.pid})" if stopped else "not running"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
