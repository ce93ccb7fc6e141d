"""Test helpers: a throwaway visdom server and headless Chromium driven over DevTools."""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def visdom_assets_missing() -> str | None:
    """Why a local visdom server cannot start offline (its web assets are not installed), or None.

    Without the assets visdom downloads them from CDNs at its first start; tests never download."""
    package = Path(importlib.util.find_spec("visdom").origin).parent
    built = package / "static" / "version.built"
    version = (package / "VERSION").read_text().strip()
    if built.is_file() and built.read_text().strip() == version:
        return None
    return ("visdom's offline web assets are not installed (scripts/bootstrap.sh skips them when npm is "
            "missing); add them with: bash scripts/install_visdom_assets.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def display_opts(*, checkpoints_dir: Path, port: int, display_id: int = 1, **overrides: Any
                 ) -> SimpleNamespace:
    """The option attributes the Visualizer reads, with CUT's defaults."""
    opt = SimpleNamespace(name="run", checkpoints_dir=str(checkpoints_dir), display_id=display_id,
                          display_server="http://localhost", display_port=port,
                          display_env="main", display_ncols=4, display_winsize=256,
                          no_html=False, update_html_freq=1)
    for key, value in overrides.items():
        setattr(opt, key, value)
    return opt


# `python -m visdom.server`, minus the optional torch import that doubles its start time,
# and minus tornado's autoreload (visdom forces debug mode), which restarts the server,
# empty, whenever a file in the venv changes.
_RUN_VISDOM = ("import sys, tornado.autoreload; sys.modules['torch'] = None; "
               "tornado.autoreload.start = lambda *args, **kwargs: None; "
               "from visdom.server.run_server import download_scripts_and_run; "
               "download_scripts_and_run()")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate, and kill if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class VisdomServer:
    """``python -m visdom.server`` on 127.0.0.1, with its state kept under ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it answers; skips the test when it cannot start offline."""
        missing = visdom_assets_missing()
        if missing:
            pytest.skip(missing)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # HOME/XDG point visdom's settings and cookies at the test's directory.
        env = dict(os.environ, HOME=str(self.workdir), XDG_CONFIG_HOME=str(self.workdir))
        log = open(self.workdir / "visdom.log", "ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_VISDOM, "-port", str(self.port), "-bind_local",
             "-env_path", str(self.workdir / "envs"), "-logging_level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        wait_until(self._answers, timeout=30, what=f"visdom on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            log = (self.workdir / "visdom.log").read_text(errors="replace")
            raise RuntimeError(f"visdom server exited with {self._proc.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(self.url, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def window_data(self, win: str, env: str = "main") -> dict:
        """The server's stored JSON of one window (what a browser would render)."""
        body = json.dumps({"win": win, "eid": env}).encode()
        with urllib.request.urlopen(f"{self.url}/win_data", data=body, timeout=5) as r:
            return json.loads(r.read())

    def __enter__(self) -> VisdomServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Chromium:
    """Headless Chromium with one page, driven through the Chrome DevTools protocol."""

    def __init__(self, workdir: Path, *, width: int = 1400, height: int = 1000) -> None:
        assert CHROMIUM, "chromium is not installed (scripts/install_browser.sh)"
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True)
        log = open(workdir / "chromium.log", "wb")
        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            port_file = profile / "DevToolsActivePort"
            wait_until(lambda: port_file.exists() and port_file.read_text().strip(),
                       timeout=30, what="Chromium's DevTools port")
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                page = next(t for t in json.loads(r.read()) if t["type"] == "page")
            # Chromium refuses DevTools websockets that carry an Origin header.
            self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                                   suppress_origin=True)
        except BaseException:
            self._proc.kill()
            self._proc.wait()
            raise
        self._next_id = 0

    def send(self, method: str, **params: Any) -> dict:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 20) -> Any:
        return wait_until(lambda: self.evaluate(expression), timeout=timeout, what=expression,
                          interval=0.2)

    def open(self, url: str, *, timeout: float = 20) -> None:
        # The marker lives in the old document only: its absence means the new one is up.
        self.evaluate("window.__previous_page = true")
        self.send("Page.navigate", url=url)
        self.wait_for("!window.__previous_page && document.readyState === 'complete'",
                      timeout=timeout)

    def broken_images(self) -> list[str]:
        """Sources of <img> elements that did not load (after all have finished)."""
        self.wait_for("[...document.images].every(i => i.complete)")
        return self.evaluate("[...document.images].filter(i => !(i.naturalWidth > 0))"
                             ".map(i => i.src)")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()
        stop_process(self._proc)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
