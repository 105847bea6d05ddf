"""Headless Chromium for the tests that open a page (report, docs site, studio, study): one way to start it.

Debian's chromium and chromium-driver (`.ci/run` installs them), driven by Selenium, offline: Selenium's
manager is told never to download a driver or a browser.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync")


@contextmanager
def headless_chromium(profile: Path, who: str, *, window: str = "1400,1000",
                      prefs: dict[str, Any] | None = None) -> Iterator[Any]:
    """A Chrome WebDriver on the system Chromium with its profile in ``profile`` and a ``window`` ("W,H" px),
    quit afterwards. ``who`` names the tests in the one-line failure when Chromium or Selenium is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{who} need {' and '.join(missing)}: apt-get install -y chromium chromium-driver",
                    pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"{who} need selenium: pip install -e '.[test]'", pytrace=False)
    old_offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download anything
    try:
        options = webdriver.ChromeOptions()
        for arg in (*CHROME_ARGS, f"--window-size={window}", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        options.binary_location = str(CHROMIUM)
        if prefs:
            options.add_experimental_option("prefs", prefs)
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        if old_offline is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old_offline


def wait_for(condition: Callable[[], T], timeout: float = 300.0, what: str = "", poll: float = 0.05) -> T:
    """Call ``condition`` every ``poll`` s until it returns something true, and return that; fail after
    ``timeout`` s (a generous bound: a slow CI machine still passes, a stuck page still fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def fill(driver: Any, selector: str, text: str) -> None:
    """Replace the text of the input at CSS ``selector`` with ``text`` and leave the field (Tab), as a user does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, selector)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text)
    box.send_keys(Keys.TAB)
