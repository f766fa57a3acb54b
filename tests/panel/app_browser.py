"""The App in a subprocess and a headless chromium on it: fixtures and helpers shared by the
panel's browser tests (``from app_browser import ...``; a module, not a conftest, so that the
tests' own ``from conftest import ...`` keeps meaning ``tests/conftest.py``).

The App runs like ``fiftyone app launch`` on a free port, with the plugin seen through a fresh
plugins folder and the test's private MongoDB, the grid on the left and the review panel on the
right. Screenshots and logs go to ``$ALC_TEST_ARTIFACTS/review_panel/<test>`` (default: the
test's tmp folder, printed at the end).

Waits go through the page (``page.wait_for_timeout``), not ``time.sleep``: Playwright's sync API
runs its event handlers (routes, console log) only while the test is inside one of its calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import python_subprocess_env

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
FIELD = "alc_queries"
QUESTION = "Is the outlined region"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

# every element that takes the keyboard focus, in order: window.__alcFocus
FOCUS_LOG = """
window.__alcFocus = [];
document.addEventListener('focusin', (e) => {
  const t = e.target;
  window.__alcFocus.push({t: Math.round(performance.now()), tag: t.tagName,
                          value: t.value === undefined ? null : t.value});
}, true);
"""

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
def artifacts(request, tmp_path):
    root = os.environ.get("ALC_TEST_ARTIFACTS")
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    out = Path(root) / "review_panel" / name if root else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    yield out
    print(f"\nscreenshots: {out}")


@pytest.fixture
def app_dataset(unique_name, tmp_path, monkeypatch):
    """6 generated images (160x120), SLIC superpixels, 8 queries on ``pseudo``."""
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
def launch_app(tmp_path, artifacts):
    """``launch_app(dataset)``: the App on ``dataset`` in a subprocess; returns its URL.
    Reviewer names default to ``browser-<panel id>`` (``$ALC_REVIEWER``)."""
    procs, logs = [], []

    def launch(dataset, reviewer: str = "browser") -> str:
        plugins = tmp_path / "plugins"
        if not plugins.exists():
            plugins.mkdir()
            (plugins / "alc-fiftyone").symlink_to(REPO, target_is_directory=True)
        env = python_subprocess_env()
        env["FIFTYONE_PLUGINS_DIR"] = str(plugins)
        env["ALC_REVIEWER"] = reviewer
        port = _free_port()
        log = open(artifacts / "app.log", "a")  # noqa: SIM115 (open while the App runs)
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-c", APP, dataset.name, str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        _wait_port(port, proc)
        return f"http://127.0.0.1:{port}/datasets/{dataset.name}"

    yield launch
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    for log in logs:
        log.close()


@pytest.fixture
def app(app_dataset, launch_app):
    return launch_app(app_dataset)


def _event_summary(body) -> str:
    """A panel event's method, parameters and the query its state names (one log line)."""
    try:
        params = json.loads(body or "{}").get("params") or {}
    except ValueError:
        return (body or "")[:300]
    state = params.get("panel_state") or {}
    shown = {k: v for k, v in params.items() if k != "panel_state"}
    q = state.get("query") or {}
    return json.dumps(
        {"params": shown, "state.query": q.get("id"), "state.reviewer": state.get("reviewer")},
        default=str,
    )[:800]


class Browser:
    """Pages of one headless chromium; every page's console, page errors and operator
    responses go to ``console.log``; each open page is screenshot at the end (``last-N``)."""

    def __init__(self, pw, artifacts: Path):
        self.artifacts = artifacts
        self.browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        self.pages = []
        self.console = open(artifacts / "console.log", "w")  # noqa: SIM115

    def context(self, width: int = 1600, height: int = 1000):
        """A browser window: its pages (:meth:`page` with ``context=``) are tabs that share
        cookies and local storage, as two tabs of one browser do."""
        return self.browser.new_context(viewport={"width": width, "height": height})

    def page(self, width: int = 1600, height: int = 1000, context=None):
        if context is not None:
            page = context.new_page()
        else:
            page = self.browser.new_page(viewport={"width": width, "height": height})
        # no "Explore Enterprise" popover (a returning user dismissed it long ago): it is a
        # modal that takes the keyboard focus from the page while it shows
        page.add_init_script("window.IS_PLAYWRIGHT = true;")
        page.add_init_script(FOCUS_LOG)
        n = len(self.pages)
        log = self.console

        def on_response(r):
            if "/operators/" in r.url:
                try:
                    body = r.text()[:4000]
                except Exception:  # noqa: BLE001 (a log line only)
                    body = "?"
                log.write(f"[page {n}] {r.status} {r.url}\n{body}\n")

        # the App's requests to its operators (panel events) not answered yet: settle()
        page.alc_inflight = set()

        def sent(r):
            if "/operators/" in r.url:
                page.alc_inflight.add(r)
                page.alc_last = time.time()
                log.write(f"[page {n}] -> {_event_summary(r.post_data)}\n")

        def done(r):
            page.alc_inflight.discard(r)
            page.alc_last = time.time()

        page.alc_last = time.time()
        page.on("request", sent)
        page.on("requestfinished", done)
        page.on("requestfailed", done)
        page.on("console", lambda m: log.write(f"[page {n}] {m.type}: {m.text}\n"))
        page.on("pageerror", lambda e: log.write(f"[page {n}] pageerror: {e}\n"))
        page.on("response", on_response)
        self.pages.append(page)
        return page

    def close(self):
        for i, page in enumerate(self.pages):
            with contextlib.suppress(Exception):  # a page already closed
                page.screenshot(path=str(self.artifacts / f"last-{i}.png"))
        self.browser.close()
        self.console.close()


@pytest.fixture
def browser(artifacts):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = Browser(pw, artifacts)
        try:
            yield b
        finally:
            b.close()


# --- helpers ---------------------------------------------------------------------------------


def open_review(page, url: str) -> None:
    """Open the App and wait until the panel shows a query and its picture (the first time
    the panel opens a dataset without App settings it stores them and reloads the tab once,
    so that the App takes them: then the reloaded page's)."""
    from playwright.sync_api import Error as PlaywrightError

    page.goto(url, timeout=120_000)
    for _ in range(3):
        page.get_by_text(QUESTION, exact=False).first.wait_for(timeout=120_000)
        page.locator("img[src^='data:image/png']").first.wait_for(timeout=30_000)
        try:
            page.evaluate("() => { window.__alcOpened = true; }")
            page.wait_for_timeout(1500)
            if page.evaluate("() => window.__alcOpened === true"):
                return
        except PlaywrightError as e:  # the one reload came in between: wait for that page
            if "context was destroyed" not in str(e):
                raise
            page.wait_for_load_state("load", timeout=120_000)


def focused(page) -> dict:
    """The element holding the keyboard focus now, and every one that took it so far."""
    return page.evaluate(
        """() => ({tag: document.activeElement.tagName,
                   value: document.activeElement.value === undefined
                          ? null : document.activeElement.value,
                   history: window.__alcFocus || []})"""
    )


def dismiss_banner(page) -> None:
    """The App's advertisement covers part of the panel."""
    dismiss = page.get_by_role("button", name="Dismiss")
    if dismiss.count():
        dismiss.first.click()


def shot(page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def queries(ds) -> dict:
    ds.reload()
    return {d.id: d for dets in ds.values(f"{FIELD}.detections") for d in (dets or [])}


def by_status(ds, status) -> list:
    return [d for d in queries(ds).values() if d.get_field("status") == status]


def reviewers_seen(ds) -> set:
    """Every name under which a query of ``ds`` is claimed or answered."""
    names = set()
    for d in queries(ds).values():
        for key in ("claimed_by", "answered_by"):
            if d.has_field(key) and d[key]:
                names.add(d[key])
    return names


SHOWN = re.compile(rf"{QUESTION}\s+`?(.+?)`?\s*\?[^\n]*?\(rank (\d+)")


def shown(page) -> dict:
    """The query the panel shows: the class the question names and its rank."""
    m = SHOWN.search(panel_text(page))
    assert m, f"no question on screen: {panel_text(page)[:300]!r}"
    return {"label": m.group(1).strip("`' "), "rank": int(m.group(2))}


def rank_of(page):
    """The rank of the query on screen, None while there is none."""
    m = SHOWN.search(panel_text(page))
    return int(m.group(2)) if m else None


def input_after(page, label: str):
    """The first text field after the text ``label``."""
    return page.locator(f"xpath=//*[normalize-space(text())='{label}']/following::input[1]").first


def set_name(page, name: str, delay: int = 20) -> None:
    """Type ``name`` in the panel's Reviewer field and press Enter (which commits it)."""
    box = input_after(page, "Reviewer")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(name, delay=delay)
    page.keyboard.press("Enter")


def status_text(page) -> str:
    """The panel's message line ('' when there is none)."""
    box = page.get_by_role("status")
    return box.first.inner_text() if box.count() else ""


def wait_for(cond, page=None, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if page is not None:
            page.wait_for_timeout(200)
        else:
            time.sleep(0.2)
    assert cond()


def settle(page, ms: int = 1500, timeout: float = 60) -> None:
    """Let the App finish what it is doing: no request to its operators (panel events) in
    flight, and none for ``ms`` milliseconds (the App's own streams never go idle)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        page.wait_for_timeout(100)
        quiet = time.time() - getattr(page, "alc_last", 0)
        if not getattr(page, "alc_inflight", ()) and quiet * 1000 >= ms:
            return
    raise AssertionError(f"the App kept working for {timeout} s")


def panel_text(page) -> str:
    """The review panel's visible text: that of the scroll container around its question."""
    return page.evaluate(
        """() => {
        const phrase = /Is the outlined region|No query to answer/;
        // the innermost element holding the question
        let node = null;
        for (const e of document.querySelectorAll('body *')) {
            if (phrase.test(e.textContent || '') &&
                (!node || e.textContent.length <= node.textContent.length)) node = e;
        }
        if (!node) return document.body.innerText;
        while (node && node !== document.body) {
            const s = getComputedStyle(node);
            if (/(auto|scroll)/.test(s.overflowY) && node.clientWidth > 200) break;
            node = node.parentElement;
        }
        return (node || document.body).innerText;
    }"""
    )


OPERATOR_ERROR = "Error occurred during operator execution"


def operator_error(page) -> str | None:
    """The error an operator's prompt shows (its last lines, expanded), or None."""
    box = page.get_by_text(OPERATOR_ERROR, exact=False)
    if not box.count():
        return None
    with contextlib.suppress(Exception):
        box.first.click()  # expands the traceback
        page.wait_for_timeout(300)
    text = page.evaluate(
        """() => [...document.querySelectorAll("[role='dialog'], .MuiDialog-root, body")]
               .map(e => e.innerText).find(t => t.includes('Error')) || ''"""
    )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tail = [ln for ln in lines if "Error" in ln or "error" in ln]
    return " | ".join((tail or lines)[-3:])


class Held:
    """Holds back the App's responses to the panel events whose request body contains
    ``marker`` (the first ``count`` of them), so that they reach the page after later
    events' responses, as under load; :meth:`release` delivers them."""

    def __init__(self, page, marker: str, count: int = 1):
        self.page, self.marker, self.count = page, marker, count
        self.held: list = []
        self.seen: list[dict] = []
        page.route("**/operators/execute**", self._handle)

    def _handle(self, route):
        body = route.request.post_data or ""
        try:
            response = route.fetch()
        except Exception:  # noqa: BLE001 (the App server dropped it: the page sees that)
            route.abort()
            return
        if self.marker in body and len(self.held) < self.count:
            try:
                self.seen.append(json.loads(body))
            except ValueError:
                self.seen.append({"raw": body})
            self.held.append((route, response))
            return
        route.fulfill(response=response)

    def release(self) -> int:
        n = len(self.held)
        for route, response in self.held:
            route.fulfill(response=response)
        self.held = []
        return n
