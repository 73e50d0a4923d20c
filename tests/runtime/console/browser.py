"""A headless Chromium from the system packages, driven by Selenium through the system
chromedriver (Selenium's own driver download is never used), and what the console's
browser tests do with it: open, fill in, click, wait for a page state, save a screenshot.

Imported by the ``browser`` fixture only, so a machine without Selenium gets the
``requires`` marker's skip (a failure in CI) instead of a collection error.
``CRANK_CONSOLE_SCREENSHOTS=<folder>`` makes :meth:`Browser.snap` save each page there
(scripts/console_screenshots.py sets it to regenerate docs/images/console).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

#: how long a page may take to reach the state a test waits for (a busy machine is slow).
WAIT_S = 60.0
SCREENSHOTS_ENV = "CRANK_CONSOLE_SCREENSHOTS"
WINDOW = (1280, 800)


def _system_binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    raise RuntimeError(f"none of {', '.join(names)} is on PATH (scripts/setup-system.sh)")


def start_chromium() -> WebDriver:
    """Headless Chromium at 1280x800 through the system's chromedriver."""
    options = Options()
    options.binary_location = _system_binary("chromium", "chromium-browser")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=_system_binary("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    # the page itself 1280x800 (the window size would include the browser's own frame)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


class Browser:
    """One headless Chromium tab on a server at ``base_url``."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    @property
    def path(self) -> str:
        """The path of the page shown (without the server's address)."""
        url: str = self.driver.current_url
        return url.removeprefix(self.base_url)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> WebElement:
        """The first element matching ``css`` once it is on the page."""
        found: WebElement = WebDriverWait(self.driver, WAIT_S).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )
        return found

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def wait_for_text(self, css: str, text: str) -> str:
        """The text of the element matching ``css`` once it holds ``text``."""
        WebDriverWait(self.driver, WAIT_S).until(
            expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        )
        return self.text(css)

    def wait_for_path(self, prefix: str) -> str:
        """The page's path once it starts with ``prefix`` (after a form's redirect)."""
        WebDriverWait(self.driver, WAIT_S).until(lambda d: self.path.startswith(prefix))
        return self.path

    def count(self, css: str) -> int:
        return len(self.driver.find_elements(By.CSS_SELECTOR, css))

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def choose(self, css: str, value: str) -> None:
        Select(self.find(css)).select_by_value(value)

    def click(self, css: str) -> None:
        """Click the element the way a person does (it must be visible and enabled)."""
        element = WebDriverWait(self.driver, WAIT_S).until(
            expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css))
        )
        element.click()

    def snap(self, name: str, *, show: str | None = None) -> None:
        """Save a screenshot of the page as ``<name>.png`` when screenshots are asked for;
        ``show``: scroll so the element it selects is in view first."""
        folder = os.environ.get(SCREENSHOTS_ENV)
        if not folder:
            return
        if show is not None:
            self.driver.execute_script(
                "arguments[0].scrollIntoView({block: 'center'})", self.find(show)
            )
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(Path(folder) / f"{name}.png"))

    def close(self) -> None:
        self.driver.quit()


__all__ = ["SCREENSHOTS_ENV", "WAIT_S", "Browser", "start_chromium"]
