"""A real browser for page tests: Debian's headless Chromium, driven by Selenium.

scripts/test.sh installs the ``chromium`` and ``chromium-driver`` packages; Selenium talks to
that chromedriver (no Selenium Manager, no browser download). Without them the tests skip, or
fail when TASKQ_REQUIRE_SERVICES=1 (CI). TASKQ_TEST_SCREENSHOTS=<dir> also copies every
screenshot there, to look at after a run. ``live_server()`` and ``browsing()`` are context
managers: a test module wraps them in its fixtures.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import services

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Headless, and nothing that reaches for Google's servers: on a closed network those
#: connections fail, many at a time, and slow the browser down.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW = (1280, 900)
#: Seconds to wait for a page element before failing.
WAIT = 10.0


def require_browser() -> None:
    """Skip (or, in CI, fail) unless Chromium, its driver and Selenium are installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the dev extra)")
    if missing:
        why = f"browser tests need {', '.join(missing)} (scripts/test.sh installs them)"
        assert not services.REQUIRED, f"{why}; required (TASKQ_REQUIRE_SERVICES=1)"
        pytest.skip(why)


def start_chromium(profile: Path) -> Any:
    """A headless Chromium WebDriver with a fresh, empty profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size={},{}".format(*WINDOW)):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Browser:
    """A driver bound to the live server: ``open()`` a path, ``shot()`` the page."""

    def __init__(self, driver: Any, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        self.copy_to = os.environ.get("TASKQ_TEST_SCREENSHOTS", "")

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> Any:
        """The first element ``css`` selects, waiting up to WAIT seconds for it to appear."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        located = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        return WebDriverWait(self.driver, WAIT).until(located, f"nothing matches {css!r}")

    def find_all(self, css: str) -> list[Any]:
        """Every element ``css`` selects on the page as it is now (no waiting: may be none)."""
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "body") -> str:
        return str(self.find(css).text)

    def login(self, username: str, password: str) -> None:
        """Sign in through the admin login form, as a person would."""
        self.open("/admin/login/?next=/admin/")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(password)
        self.find("input[type=submit]").click()
        self.find("#user-tools")  # the page after login: waits for it

    def shot(self, name: str) -> Path:
        """Save a screenshot ``<name>.png`` of the whole page (and copy it if asked)."""
        path = self.shots / f"{name}.png"
        # The window grows to the page's height for the picture, so nothing is cut off.
        chrome, height = self.driver.execute_script(
            "return [window.outerHeight - window.innerHeight,"
            " document.documentElement.scrollHeight]")
        self.driver.set_window_size(WINDOW[0], max(WINDOW[1], height + chrome))
        try:
            assert self.driver.save_screenshot(str(path)), f"no screenshot for {name}"
        finally:
            self.driver.set_window_size(*WINDOW)
        if self.copy_to:
            Path(self.copy_to).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.copy_to) / path.name)
        return path


@contextmanager
def live_server() -> Iterator[str]:
    """A live server (Django's test server thread) with the admin's CSS and scripts; its URL.

    Not pytest-django's ``live_server``: with no STATIC_URL in tests/settings.py, that one
    answers every request with a server error (its static handler cannot start), and without
    ``django.contrib.staticfiles`` installed it would not serve the admin's files anyway. Here
    STATIC_URL is set while the server runs and the staticfiles handler finds the files in the
    apps. Rows the server reads must be committed: use it with ``transactional_db``.
    """
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread
    from django.test.utils import override_settings

    with override_settings(STATIC_URL="/static/"):
        thread = LiveServerThread("localhost", StaticFilesHandler)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        try:
            yield f"http://localhost:{thread.port}"
        finally:
            thread.terminate()


@contextmanager
def browsing(base_url: str, tmp_path: Path) -> Iterator[Browser]:
    """Headless Chromium on ``base_url``, its profile and screenshots under ``tmp_path``."""
    require_browser()
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = start_chromium(profile)
    try:
        yield Browser(driver, base_url, shots)
    finally:
        driver.quit()
