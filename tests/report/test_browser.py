"""The HTML pages in a real browser: headless Debian chromium over the DevTools protocol.

A tiny-scale report and a ``skiplab.diagnose`` page (every probe) are served on localhost; at
phone (390 px) and desktop (1280 px) widths every image must load, the console must stay free
of errors, and the body must not overflow horizontally. Screenshots are kept in
``test-artifacts/``.
"""

import base64
import functools
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import skiplab
from skiplab.claims import reproduce, select_claims
from skiplab.models import create_model
from skiplab.report import build_report
from skiplab.store import Store

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
    ),
]
websocket = pytest.importorskip("websocket", reason="websocket-client is a dev dependency")


class DevTools:
    """The smallest DevTools-protocol client: numbered commands, events collected on the side."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events:
                if ev.get("method") == method:
                    self.events.remove(ev)
                    return ev
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def close(self):
        self.ws.close()


@pytest.fixture(scope="module")
def served_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    with Store(root / "s.sqlite") as store:
        reproduce(
            select_claims("C01"), scale="tiny", store=store, workdir=root / "work", force=True
        )
        index = build_report(store, root / "report", scale="tiny")
    assert list((root / "report" / "figures").rglob("*.png")), "the report has no figures"
    yield from _serve(index.parent)


@pytest.fixture(scope="module")
def served_diagnosis(tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("diagnose")
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1)
    x, y = torch.randn(32, 1, 40), torch.randint(0, 10, (32,))
    d = skiplab.diagnose(model, x, target=y, probes="all", out=out)
    assert d.errors == {}, d.errors
    assert len(list((out / "figures").glob("*.png"))) == 8  # 7 probes, the landscape 2
    yield from _serve(out)


def _serve(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert proc.poll() is None, "chromium exited at start"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
        pages = [t for t in json.load(r) if t["type"] == "page"]
    yield pages[0]["webSocketDebuggerUrl"]
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


_CHECK = """(() => {
  const imgs = [...document.images];
  return JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    bodyScroll: document.body.scrollWidth,
    docScroll: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    sections: document.querySelectorAll('section.claim').length,
  });
})()"""


@pytest.mark.parametrize("page", ["report", "diagnosis"])
@pytest.mark.parametrize("name, width, height", [("phone", 390, 844), ("desktop", 1280, 900)])
def test_page_in_headless_chromium(request, page, browser, name, width, height):
    url = request.getfixturevalue(f"served_{page}")
    dt = DevTools(browser)
    try:
        for domain in ("Page", "Runtime", "Log"):
            dt.call(f"{domain}.enable")
        dt.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=name == "phone",
        )  # fmt: skip
        dt.call("Page.navigate", url=url)
        dt.wait_for("Page.loadEventFired")
        # Images are lazy-loaded: scroll through the page so every one is requested.
        dt.call(
            "Runtime.evaluate",
            expression="(async () => { for (const i of document.images) { i.loading = 'eager';"
            " i.scrollIntoView(); } await Promise.all([...document.images].map(i => i.decode()"
            ".catch(() => null))); window.scrollTo(0, 0); })()",
            awaitPromise=True,
        )
        result = json.loads(
            dt.call("Runtime.evaluate", expression=_CHECK, returnByValue=True)["result"]["value"]
        )
        shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{page}-{name}.png").write_bytes(base64.b64decode(shot["data"]))
        # Drain what arrived meanwhile, then look for errors of any kind.
        time.sleep(0.2)
        dt.call("Runtime.evaluate", expression="1")
        errors = []
        for ev in dt.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"] + " " + params["entry"].get("url", ""))
    finally:
        dt.close()
    assert result["sections"] >= 1
    assert result["images"] >= 1 and result["broken"] == [], result
    assert errors == []
    assert result["viewport"] == width
    # Usable at this width: nothing pushes the page sideways.
    assert result["bodyScroll"] <= width and result["docScroll"] <= width, result
