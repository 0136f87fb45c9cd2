"""A real `ingest serve` on loopback over the test database, and Debian's Chromium driven by Playwright.

Chromium comes from the system packages (`.ci/run` installs it); Playwright's own browser download is
never used. Without Chromium the browser tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INGEST = str(Path(sys.executable).parent / "ingest")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


# Per module, not per session: Playwright's sync API runs an event loop in the main thread while it is
# open, and later tests that call asyncio.run() must not find one running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    yield tab
    context.close()


@dataclass
class Console:
    """`ingest serve` as an operator starts it; keys made with `ingest keys create`."""

    url: str
    env: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)

    def key(self, user: str, *, admin: bool = False) -> str:
        args = [INGEST, "keys", "create", "--user", user, *(["--admin"] if admin else [])]
        made = subprocess.run(args, env=self.env, capture_output=True, text=True, check=True)
        self.keys[user] = made.stdout.strip()
        return self.keys[user]

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[user]}"})


@pytest.fixture
def start_console(ingest_env: dict[str, str]) -> Iterator[Callable[..., Console]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> Console:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, **ingest_env, **{f"INGEST_{k}": v for k, v in settings.items()}}
        proc = subprocess.Popen(
            [INGEST, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ingest serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health/live").status_code == 200:
                    return Console(url, env)
            except httpx.TransportError:
                time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait()


@pytest.fixture
def console(start_console: Callable[..., Console]) -> Console:
    return start_console()


def sign_in(page: Page, console: Console, user: str) -> None:
    page.goto(console.url + "/")
    page.get_by_label("API key").fill(console.keys[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()


def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    """docs/console/NAME-desktop.png and NAME-phone.png of the page as it is now (its first screen only
    unless `full_page`)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=full_page)
    page.set_viewport_size(DESKTOP)
