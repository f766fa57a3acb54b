"""The review panel in the real App: a headless chromium opens it, answers three queries
(confirm, correct, undo) with clicks, and the database is checked after each.

The App runs in a subprocess (like ``fiftyone app launch``) on a free port, with the plugin
seen through a fresh plugins folder and the test's private MongoDB. Screenshots of each step
are kept in ``$ALC_TEST_ARTIFACTS`` (default: the test's tmp folder, printed at the end).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import python_subprocess_env

from alc_fiftyone.review.answers import attr

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
FIELD = "alc_queries"

pytestmark = pytest.mark.browser

APP = r"""
import sys
import fiftyone as fo
ds = fo.load_dataset(sys.argv[1])
grid = fo.Panel(type="Samples", pinned=True)
review = fo.Panel(type="alc_review")
spaces = fo.Space(
    orientation="horizontal",
    children=[
        fo.Space(children=[grid], active_child=grid.component_id),
        fo.Space(children=[review], active_child=review.component_id),
    ],
)
session = fo.launch_app(ds, remote=True, address="127.0.0.1", port=int(sys.argv[2]),
                        spaces=spaces)
print("APP READY", flush=True)
session.wait(-1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the App exited early (see app.log beside the screenshots)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the App did not listen on port {port} within {timeout} s")


@pytest.fixture
def artifacts(tmp_path):
    root = os.environ.get("ALC_TEST_ARTIFACTS")
    out = Path(root) / "review_panel" if root else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    yield out
    print(f"\nscreenshots: {out}")


@pytest.fixture
def app_dataset(unique_name, tmp_path, monkeypatch):
    import alc_fiftyone as alc

    # the App subprocess reads the masks: they must be where both processes look
    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(tmp_path / "alc"))
    ds = alc.make_demo_dataset(
        name=unique_name, num_samples=6, size=(160, 120), seed=4, persistent=True
    )
    alc.compute_superpixels(ds, method="slic", n_segments=30)
    alc.rank_superpixels(ds, "pseudo", budget=8)
    yield ds
    ds.delete()


@pytest.fixture
def app(app_dataset, tmp_path, artifacts):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "alc-fiftyone").symlink_to(REPO, target_is_directory=True)
    env = python_subprocess_env()
    env["FIFTYONE_PLUGINS_DIR"] = str(plugins)
    env["ALC_REVIEWER"] = "browser"
    port = _free_port()
    log = open(artifacts / "app.log", "w")  # noqa: SIM115 (open while the App runs)
    proc = subprocess.Popen(
        [sys.executable, "-c", APP, app_dataset.name, str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/datasets/{app_dataset.name}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _queries(ds):
    ds.reload()
    return {d.id: d for dets in ds.values(f"{FIELD}.detections") for d in (dets or [])}


def _by_status(ds, status):
    return [d for d in _queries(ds).values() if d.get_field("status") == status]


def test_answer_three_queries_in_the_app(app, app_dataset, artifacts):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ds = app_dataset
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            console = open(artifacts / "console.log", "w")  # noqa: SIM115
            page.on("console", lambda m: console.write(f"{m.type}: {m.text}\n"))
            page.on("pageerror", lambda e: console.write(f"pageerror: {e}\n"))

            def on_response(r):
                if "/operators/" in r.url:
                    try:
                        body = r.text()[:20000]
                    except Exception:  # noqa: BLE001 (a log line only)
                        body = "?"
                    console.write(f"{r.status} {r.url}\n{body}\n")

            page.on("response", on_response)
            page.goto(app, timeout=120_000)
            question = page.get_by_text("Is the outlined region", exact=False)
            question.wait_for(timeout=120_000)
            page.locator("img[src^='data:image/png']").first.wait_for(timeout=30_000)
            dismiss = page.get_by_role("button", name="Dismiss")
            if dismiss.count():
                dismiss.first.click()  # the App's advertisement covers part of the panel
            page.screenshot(path=str(artifacts / "1-query.png"))

            claimed = _by_status(ds, "claimed")
            assert len(claimed) == 1 and claimed[0].claimed_by.startswith("browser-")
            first = claimed[0]
            reviewer = first.claimed_by

            # 1. confirm
            page.get_by_role("button", name=f"Correct: {first.label}").click()
            page.get_by_text("saved:", exact=False).wait_for(timeout=30_000)
            _wait_for(lambda: len(_by_status(ds, "confirmed")) == 1)
            d1 = _queries(ds)[first.id]
            assert d1.status == "confirmed" and d1.answered_by == reviewer
            page.screenshot(path=str(artifacts / "2-confirmed.png"))

            # 2. correct with the first suggested class
            _wait_for(lambda: len(_by_status(ds, "claimed")) == 1)
            second = _by_status(ds, "claimed")[0]
            suggestion = page.get_by_role("button", name="1. ", exact=False)
            suggestion.first.wait_for(timeout=30_000)
            picked = suggestion.first.inner_text().split(". ", 1)[1].strip()
            suggestion.first.click()
            _wait_for(lambda: attr(_queries(ds)[second.id], "status") == "corrected")
            d2 = _queries(ds)[second.id]
            assert d2.answer == picked and d2.answered_by == reviewer
            page.get_by_text(f"-> {picked}", exact=False).wait_for(timeout=30_000)
            page.screenshot(path=str(artifacts / "3-corrected.png"))

            # 3. undo: the correction is taken back and its query is shown again
            page.get_by_role("button", name="Undo").click()
            page.get_by_text("undone:", exact=False).wait_for(timeout=30_000)
            _wait_for(lambda: attr(_queries(ds)[second.id], "status") == "claimed")
            d2 = _queries(ds)[second.id]
            assert attr(d2, "answer") is None and d2.claimed_by == reviewer
            assert _queries(ds)[first.id].status == "confirmed"
            assert len(_by_status(ds, "corrected")) == 0
            page.screenshot(path=str(artifacts / "4-undone.png"))

            # keyboard (panels/keys.js): Enter confirms the query on screen, U undoes it
            page.locator("body").click(position={"x": 5, "y": 500})  # focus off any input
            page.keyboard.press("Enter")
            _wait_for(lambda: attr(_queries(ds)[second.id], "status") == "confirmed")
            page.keyboard.press("u")
            _wait_for(lambda: attr(_queries(ds)[second.id], "status") == "claimed")
            page.screenshot(path=str(artifacts / "5-keyboard.png"))
        except BaseException:
            page.screenshot(path=str(artifacts / "failure.png"))
            raise
        finally:
            browser.close()


def _wait_for(cond, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    assert cond()
