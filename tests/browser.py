"""Headless Chromium for the pages' tests (selenium), and their screenshots."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest


def chromium(window: str = "1200,1000") -> Any:
    """Headless Chromium with its console log, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    if not binary or not chromedriver:
        pytest.skip(f"no {'chromium' if not binary else 'chromedriver'} on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={window}"):
        options.add_argument(argument)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})  # the console; the requests (requested)
    return webdriver.Chrome(options=options, service=Service(chromedriver))


def requested(driver: Any) -> list[str]:
    """The URLs the page has requested since the last call (the DevTools' network events)."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [event["params"]["request"]["url"] for event in events if event["method"] == "Network.requestWillBeSent"]


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """Save the window as ``tmp_path/name`` and, with ``CAPTUM_GMAR_ARTEFACTS`` set, in that folder too."""
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("CAPTUM_GMAR_ARTEFACTS"):
        folder = Path(os.environ["CAPTUM_GMAR_ARTEFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, folder / name)
    return tmp_path / name
