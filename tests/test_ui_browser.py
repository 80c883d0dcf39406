"""The Airflow UI as a person uses it, in headless Chromium (Debian's package, no browser download).

A local Airflow started with ``bin/airflow-local`` serves the package. The test logs in, opens the
batch DAG, triggers it for 2019-10-01 from the trigger form, waits for the run to succeed, then
opens the dashboard and checks that the charts are drawn with the gold numbers. It then triggers
the replay DAG from its form at full speed and checks that every event sent was read back from
the local stream. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import duckdb
import pytest
from conftest import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = os.environ.get("LAKEHOUSE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
DAG_ID = "ecommerce_batch_lakehouse"
REPLAY_DAG_ID = "ecommerce_stream_replay"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory):
    """A local Airflow on a free port of 127.0.0.1, stopped with its whole process group after."""
    if not Path(CHROMIUM).exists():
        message = (
            f"Chromium not found at {CHROMIUM}: install Debian's chromium package (apt-get install chromium)"
        )
        # CI sets LAKEHOUSE_REQUIRE_BROWSER, so a missing browser fails there instead of skipping.
        if os.environ.get("LAKEHOUSE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("airflow-ui")
    home, lake, port = root / "home", root / "lake", _free_port()
    command = [sys.executable, str(PROJECT_ROOT / "bin" / "airflow-local")]
    options = ["--home", str(home), "--lake", str(lake), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.pop("AIRFLOW_HOME", None)
    started = subprocess.run(
        [*command, "start", "--detach", "--timeout", "300", *options], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr + (home / "standalone.log").read_text()[-3000:]
    try:
        yield {
            "url": f"http://127.0.0.1:{port}",
            "password": json.loads((home / "passwords.json").read_text())["admin"],
            "lake": lake,
            "output": started.stdout,
        }
    finally:
        subprocess.run([*command, "stop", *options], env=env, capture_output=True, text=True)
        pid_file = home / "standalone.pid"
        assert not pid_file.exists()
        # The replay's local Kinesis endpoint runs in a session of its own and is stopped too.
        assert not (lake / "kinesis" / "endpoint.json").exists()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _api(ui: dict, path: str, body: dict | None = None, method: str = "GET") -> tuple[int, dict]:
    token_request = urllib.request.Request(
        f"{ui['url']}/auth/token",
        data=json.dumps({"username": "admin", "password": ui["password"]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(token_request, timeout=30) as response:
        token = json.load(response)["access_token"]
    request = urllib.request.Request(
        f"{ui['url']}/api/v2{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _login(page, ui: dict) -> None:
    page.goto(ui["url"] + "/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ui["password"])
    page.click("button[type=submit]")
    page.wait_for_url(ui["url"] + "/", timeout=30_000)


def _open_trigger_form(page, ui: dict, dag_id: str = DAG_ID):
    page.goto(f"{ui['url']}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def _number_field(dialog, name: str):
    return dialog.locator(f"#number-input\\:element_{name}\\:inc").locator("xpath=../..").locator("input")


def _wait_for_run(ui: dict, dag_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        runs = _api(ui, f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=1")[1]["dag_runs"]
        if (runs and runs[0]["state"] in ("success", "failed")) or time.monotonic() > deadline:
            return runs[0] if runs else {}
        time.sleep(5)


def _screenshot_run(page, ui: dict, dag_id: str, run: dict, name: str) -> None:
    page.goto(f"{ui['url']}/dags/{dag_id}/runs/{run['dag_run_id']}")
    # The run page draws its task list after the first paint.
    page.wait_for_timeout(3000)
    page.screenshot(path=str(ARTIFACTS / name))


def test_start_command_prints_url_and_login(airflow_ui):
    assert f"Airflow is up at {airflow_ui['url']}" in airflow_ui["output"]
    assert f"Log in as admin with password {airflow_ui['password']}" in airflow_ui["output"]


def test_form_clamps_negative_window(airflow_ui, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _login(page, airflow_ui)
    dialog = _open_trigger_form(page, airflow_ui)
    window = _number_field(dialog, "abandonment_window_hours")
    window.fill("-5")
    window.press("Tab")
    page.screenshot(path=str(ARTIFACTS / "trigger-form-negative-window.png"))
    # The number field enforces the parameter's minimum of 1 hour.
    assert window.input_value() == "1"
    page.close()


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"event_date": "2019-13-45"}, "event_date"),
        ({"abandonment_window_hours": -5}, "abandonment_window_hours"),
        ({"brand_conversion_ratio": 7}, "brand_conversion_ratio"),
    ],
)
def test_api_rejects_bad_params(airflow_ui, conf, field):
    """The trigger endpoint behind the form validates params: no run is created."""
    before = _api(airflow_ui, f"/dags/{DAG_ID}/dagRuns")[1]["total_entries"]
    status, body = _api(airflow_ui, f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf}, "POST")
    assert status == 400, body
    assert field in json.dumps(body)
    assert _api(airflow_ui, f"/dags/{DAG_ID}/dagRuns")[1]["total_entries"] == before


def test_trigger_run_and_dashboard(airflow_ui, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _login(page, airflow_ui)
    page.screenshot(path=str(ARTIFACTS / "home.png"))
    dialog = _open_trigger_form(page, airflow_ui)
    dialog.locator("#element_event_date").fill("2019-10-01")
    page.screenshot(path=str(ARTIFACTS / "trigger-form.png"))
    page.locator("[data-testid=trigger-dag-submit]").click()

    run = _wait_for_run(airflow_ui, DAG_ID, 420)
    _screenshot_run(page, airflow_ui, DAG_ID, run, "dag-run.png")
    assert run["state"] == "success", run
    assert run["conf"]["event_date"] == "2019-10-01"

    lake = airflow_ui["lake"]
    visitors, views, purchases = (
        duckdb.connect()
        .execute(
            f"SELECT unique_visitors, views, purchases FROM read_parquet('{lake}/gold/daily_unique_visitors/*/*.parquet')"
        )
        .fetchone()
    )
    dashboard = browser.new_page(viewport={"width": 1280, "height": 900})
    dashboard.goto((lake / "dashboard" / "index.html").as_uri())
    dashboard.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", timeout=30_000
    )
    dashboard.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert dashboard.locator("[data-kpi=unique_visitors] b").inner_text() == str(visitors)
    assert dashboard.locator("[data-kpi=views] b").inner_text() == str(views)
    assert dashboard.locator("[data-kpi=purchases] b").inner_text() == str(purchases)
    for table in (
        "daily_unique_visitors",
        "cart_abandonment",
        "top_categories_hourly",
        "top_categories_weekday",
        "brand_marketing",
    ):
        chart = dashboard.locator(f"#chart-{table}")
        assert chart.locator(".main-svg").count() >= 1, table
        # Plotly draws one SVG mark per bar, cell or point: an empty chart has none.
        marks = chart.locator("g.point, g.hm, image, path.point").count()
        assert marks > 0, f"{table}: nothing drawn"
    bars = dashboard.evaluate("() => document.getElementById('chart-daily_unique_visitors').data[0].y")
    assert bars == [visitors]
    shutil.copy(lake / "dashboard" / "index.html", ARTIFACTS / "dashboard.html")
    page.close()


def test_replay_form_rejects_bad_stream_name(airflow_ui, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _login(page, airflow_ui)
    before = _api(airflow_ui, f"/dags/{REPLAY_DAG_ID}/dagRuns")[1]["total_entries"]
    dialog = _open_trigger_form(page, airflow_ui, REPLAY_DAG_ID)
    dialog.locator("#element_stream_name").fill("events/../other")
    page.locator("[data-testid=trigger-dag-submit]").click()
    dialog.get_by_text("stream_name").first.wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "replay-form-bad-stream-name.png"))
    assert _api(airflow_ui, f"/dags/{REPLAY_DAG_ID}/dagRuns")[1]["total_entries"] == before
    page.close()


def test_trigger_replay_and_read_back(airflow_ui, browser):
    """Replay 2019-10-01 at full speed from the form; the reconcile task finds every event."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _login(page, airflow_ui)
    dialog = _open_trigger_form(page, airflow_ui, REPLAY_DAG_ID)
    dialog.locator("#element_start").fill("2019-10-01")
    dialog.locator("#element_end").fill("2019-10-01")
    speedup = _number_field(dialog, "speedup")
    speedup.fill("0")
    speedup.press("Tab")
    page.screenshot(path=str(ARTIFACTS / "replay-trigger-form.png"))
    page.locator("[data-testid=trigger-dag-submit]").click()

    run = _wait_for_run(airflow_ui, REPLAY_DAG_ID, 300)
    _screenshot_run(page, airflow_ui, REPLAY_DAG_ID, run, "replay-run.png")
    assert run["state"] == "success", run
    assert run["conf"]["speedup"] == 0

    # The day's events, counted apart: silver when the batch DAG has run, else the landed rows
    # that the Glue job would keep (the sample's last row is cut off).
    lake = airflow_ui["lake"]
    silver = lake / "silver" / "events" / "event_date=2019-10-01"
    if silver.is_dir():
        expected = (
            duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{silver}/*.parquet')").fetchone()[0]
        )
    else:
        landed = (lake / "landing" / "events" / "event_date=2019-10-01").glob("*.csv")
        expected = sum(len(path.read_text().splitlines()) - 1 for path in landed) - 1
    run_id = urllib.parse.quote(run["dag_run_id"], safe="")
    base = f"/dags/{REPLAY_DAG_ID}/dagRuns/{run_id}/taskInstances"
    sent = _api(airflow_ui, f"{base}/replay_events/xcomEntries/return_value")[1]["value"]
    report = _api(airflow_ui, f"{base}/reconcile/xcomEntries/return_value")[1]["value"]
    assert sent["sent"] == expected
    assert report["received_records"] == report["expected_records"] == expected
    assert report["lost"] == 0
    assert report["unexpected_records"] == 0
    page.close()
