"""The web app in a real browser: Debian's headless Chromium, driven by Selenium, on a real daemon
indexing a folder of generated palette images and real photos.

Colours picked on the page find the image dominated by them; an image dropped on the page (or chosen
with the file input) finds itself first; a photo copied into the folder raises the live status count
and shows up in the next search without a reload; a result opens a detail view with its path, its
palette and a working "more like this". Each test also checks that the browser logged no error (a
Content-Security-Policy violation, a failed request). Set CHROMATICA_SCREENSHOT=docs/screenshot-search.png
to refresh the README's screenshot from the first test.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900
UI_TIMEOUT = 20.0  # any wait on the page; the daemon answers a search in milliseconds

PALETTES: dict[str, tuple[int, int, int]] = {
    "red.png": (214, 40, 40), "teal.png": (0, 128, 128), "yellow.png": (244, 208, 63),
    "navy.png": (20, 40, 120), "orange.png": (247, 127, 0), "green.png": (56, 158, 70),
    "violet.png": (130, 60, 170), "pink.png": (240, 140, 180),
}
STRIPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "stripes/teal-orange.png": ((0, 128, 128), (247, 127, 0)),
    "stripes/navy-yellow-red.png": ((20, 40, 120), (244, 208, 63), (214, 40, 40)),
    "stripes/green-pink.png": ((56, 158, 70), (240, 140, 180)),
}
PHOTOS = {"photos/coffee.jpg": "coffee", "photos/astronaut.jpg": "astronaut", "photos/rocket.jpg": "rocket"}


def striped(colors: tuple[tuple[int, int, int], ...], size: tuple[int, int] = (60, 90)) -> Any:
    img = solid(colors[0], size)
    band = size[1] // len(colors)
    for i, rgb in enumerate(colors):
        img[:, i * band:(i + 1) * band] = rgb
    return img


@dataclass
class App:
    env: DaemonEnv
    url: str  # with its token
    indexed: int

    def path(self, name: str) -> str:
        return str(self.env.pictures / name)


@pytest.fixture
def app(daemon_env: DaemonEnv) -> Iterator[App]:
    pictures = daemon_env.pictures
    for name, rgb in PALETTES.items():
        write_rgb(pictures / name, solid(rgb))
    for name, colors in STRIPES.items():
        write_rgb(pictures / name, striped(colors))
    for name, which in PHOTOS.items():
        write_rgb(pictures / name, photo(which), IMWRITE_JPEG_QUALITY=90)
    n = len(PALETTES) + len(STRIPES) + len(PHOTOS)
    daemon_env.write_config(web_port=0)
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(n), timeout=60)
    url = daemon_env.status()["web_url"]
    assert url.startswith("http://127.0.0.1:") and "?token=" in url
    yield App(daemon_env, url, n)
    assert daemon_env.stop() == 0


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with its own profile dir, a WIDTH x HEIGHT viewport and the page's console logged."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(UI_TIMEOUT)
        # The viewport itself is WIDTH x HEIGHT (a window of that size has less room for the page).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


# -- helpers -------------------------------------------------------------------------------------
def wait(driver: webdriver.Chrome, timeout: float = UI_TIMEOUT) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,))


def open_app(driver: webdriver.Chrome, app: App) -> None:
    driver.get(app.url)
    wait(driver).until(lambda d: d.current_url.rstrip("/").endswith(str(urlport(app.url))))
    assert "token=" not in driver.current_url  # traded for a cookie, not kept in the address bar
    wait(driver).until(lambda d: text(d, "status-indexed") == str(app.indexed))


def urlport(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def results(driver: webdriver.Chrome) -> list[WebElement]:
    return list(driver.find_elements(By.CSS_SELECTOR, "#results .result[data-id]"))


def first_result_path(driver: webdriver.Chrome) -> str | None:
    found = results(driver)
    return found[0].get_attribute("data-path") if found else None


def wait_first(driver: webdriver.Chrome, path: str, previous: str | None = None) -> WebElement:
    """Wait for a new answer whose first result is `path`; `previous` is the summary line before it."""
    wait(driver).until(lambda d: (previous is None or text(d, "summary") != previous)
                       and first_result_path(d) == path)
    return results(driver)[0]


def set_color(driver: webdriver.Chrome, row: int, hex_color: str, weight: int | None = None) -> None:
    """Set a colour picker as a user does (its native dialog cannot be driven): value, then input/change."""
    picker = driver.find_elements(By.CSS_SELECTOR, "#colors .color-row .color-picker")[row]
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
                          "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", picker, hex_color)
    if weight is not None:
        slider = driver.find_elements(By.CSS_SELECTOR, "#colors .color-row .color-weight")[row]
        driver.execute_script("arguments[0].value = arguments[1];"
                              "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", slider, weight)


def keep_colors(driver: webdriver.Chrome, n: int) -> None:
    while len(driver.find_elements(By.CSS_SELECTOR, "#colors .color-row")) > n:
        driver.find_elements(By.CSS_SELECTOR, "#colors .color-row .color-remove")[-1].click()
    while len(driver.find_elements(By.CSS_SELECTOR, "#colors .color-row")) < n:
        driver.find_element(By.ID, "add-color").click()


def thumbnails_shown(driver: webdriver.Chrome) -> bool:
    """Every thumbnail in view has loaded (lazy ones below the fold are not asked for)."""
    return bool(driver.execute_script(
        "const imgs = [...document.querySelectorAll('#results img.thumb')]"
        "  .filter(i => i.getBoundingClientRect().top < innerHeight);"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"))


def roots_shown(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    """The status panel's folders as (state, text), read in one go (the panel refreshes itself)."""
    return [tuple(r) for r in driver.execute_script(
        "return [...document.querySelectorAll('#status-roots li.root')].map(li => [li.dataset.state, li.innerText]);")]


def assert_no_browser_errors(driver: webdriver.Chrome) -> None:
    """No CSP violation, failed request or script error was logged by the page."""
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == [], errors


# -- the tests -----------------------------------------------------------------------------------
def test_a_picked_colour_finds_the_image_dominated_by_it(app: App, browser: webdriver.Chrome) -> None:
    open_app(browser, app)
    [(state, shown)] = roots_shown(browser)
    assert state == "watched" and str(app.env.pictures) in shown
    keep_colors(browser, 1)
    set_color(browser, 0, "#008080")
    assert browser.find_element(By.CSS_SELECTOR, "#colors .color-text").get_attribute("value") == "#008080"
    browser.find_element(By.ID, "search").click()
    first = wait_first(browser, app.path("teal.png"))
    assert first.get_attribute("data-rank") == "1"
    assert first.find_element(By.CSS_SELECTOR, ".result-score").text.startswith("ΔE ")
    # Its palette bar: one swatch, teal, as wide as the bar (the whole image is that colour).
    swatches = first.find_elements(By.CSS_SELECTOR, ".palette .swatch")
    assert swatches[0].get_attribute("data-hex") == "#008080"
    bar_width = first.find_element(By.CSS_SELECTOR, ".palette").size["width"]
    assert swatches[0].size["width"] >= 0.9 * bar_width
    img = first.find_element(By.CSS_SELECTOR, "img.thumb")
    assert img.get_attribute("loading") == "eager" and img.get_attribute("alt")  # the first ones load at once

    # A CSS colour name typed in the text field, and Enter (no click) searches.
    previous = text(browser, "summary")
    field = browser.find_element(By.CSS_SELECTOR, "#colors .color-text")
    field.clear()
    field.send_keys("gold", Keys.ENTER)
    wait_first(browser, app.path("yellow.png"), previous)
    assert browser.find_element(By.CSS_SELECTOR, "#colors .color-picker").get_attribute("value") == "#ffd700"

    # Two weighted colours: mostly teal, some orange finds the teal-and-orange stripes.
    keep_colors(browser, 2)
    set_color(browser, 0, "#008080", 50)
    set_color(browser, 1, "#f77f00", 50)
    previous = text(browser, "summary")
    browser.find_element(By.ID, "search").click()
    wait_first(browser, app.path("stripes/teal-orange.png"), previous)
    assert len(results(browser)) == app.indexed  # k (24) is more than the index holds: every image
    wait(browser).until(thumbnails_shown)
    png = browser.get_screenshot_as_png()
    assert png.startswith(b"\x89PNG")
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (WIDTH, HEIGHT)
    target = os.environ.get("CHROMATICA_SCREENSHOT")
    if target:
        Path(target).write_bytes(png)
    assert_no_browser_errors(browser)


def test_an_image_chosen_or_dropped_finds_itself_first(app: App, browser: webdriver.Chrome) -> None:
    open_app(browser, app)
    # The file chooser: its <input type=file> is given the path, as a user picking the file does.
    chosen = app.path("photos/coffee.jpg")
    browser.find_element(By.ID, "file").send_keys(chosen)
    wait_first(browser, chosen)
    assert browser.find_element(By.ID, "drop-preview").is_displayed()

    # A drop on the drop zone: a real File in a DataTransfer, dispatched as the browser does on a drop.
    dropped = app.path("photos/astronaut.jpg")
    previous = text(browser, "summary")
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const dt = new DataTransfer();"
        "dt.items.add(new File([bytes], 'astronaut.jpg', {type: 'image/jpeg'}));"
        "const zone = document.getElementById('drop');"
        "for (const type of ['dragenter', 'dragover', 'drop'])"
        "  zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));",
        base64.b64encode(Path(dropped).read_bytes()).decode())
    wait_first(browser, dropped, previous)
    assert "astronaut.jpg" in text(browser, "summary")
    assert_no_browser_errors(browser)


def test_a_new_photo_shows_in_the_status_and_a_search_without_a_reload(app: App, browser: webdriver.Chrome,
                                                                      tmp_path: Path) -> None:
    open_app(browser, app)
    browser.execute_script("window.__sameDocument = true;")
    keep_colors(browser, 1)
    set_color(browser, 0, "#008080")
    browser.find_element(By.ID, "search").click()
    wait_first(browser, app.path("teal.png"))
    assert not browser.find_element(By.ID, "stale").is_displayed()

    source = write_rgb(tmp_path / "outside" / "chelsea.jpg", photo("chelsea"), IMWRITE_JPEG_QUALITY=90)
    new = app.env.pictures / "photos" / "chelsea.jpg"
    shutil.copyfile(source, new)
    wait(browser).until(lambda d: text(d, "status-indexed") == str(app.indexed + 1))
    # The results on screen say the index moved on since they were asked for.
    wait(browser).until(lambda d: d.find_element(By.ID, "stale").is_displayed())
    assert browser.execute_script("return window.__sameDocument === true;")  # the page was not reloaded

    browser.find_element(By.ID, "file").send_keys(str(source))  # a copy outside the folder: the same image
    wait_first(browser, str(new))
    assert browser.execute_script("return window.__sameDocument === true;")
    assert not browser.find_element(By.ID, "stale").is_displayed()
    assert_no_browser_errors(browser)


def test_the_status_panel_shows_roots_failures_and_retries(app: App, browser: webdriver.Chrome) -> None:
    open_app(browser, app)
    assert text(browser, "status-state") == "idle"
    assert text(browser, "status-failed") == "0"
    assert not browser.find_element(By.ID, "failures-box").is_displayed()
    (app.env.pictures / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    wait(browser).until(lambda d: text(d, "status-failed") == "1")
    failure = wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "#status-failures li.failure"))
    assert "broken.jpg" in failure.find_element(By.CSS_SELECTOR, ".path").text
    assert failure.find_element(By.CSS_SELECTOR, ".reason").text.strip() != ""
    browser.find_element(By.ID, "retry-failed").click()
    wait(browser).until(lambda d: text(d, "retry-result") == "1 file queued again")
    # It is read again and fails again, the same way: the folder shows its photos and that one failure.
    wait(browser).until(lambda d: text(d, "status-failed") == "1"
                        and any(f"{app.indexed} photos, 1 failed" in shown for _, shown in roots_shown(d)))
    [(state, shown)] = roots_shown(browser)
    assert state == "watched" and str(app.env.pictures) in shown
    assert_no_browser_errors(browser)


def test_a_result_opens_its_detail_and_more_like_this(app: App, browser: webdriver.Chrome) -> None:
    open_app(browser, app)
    keep_colors(browser, 1)
    set_color(browser, 0, "#14287a")
    browser.find_element(By.ID, "search").click()
    first = wait_first(browser, app.path("navy.png"))
    image_id = first.get_attribute("data-id")
    # Open the second result (not the query's best) to see "more like this" put it first.
    second = results(browser)[1]
    second_id, second_path = second.get_attribute("data-id"), second.get_attribute("data-path")
    assert second_path is not None and second_id != image_id
    second.find_element(By.CSS_SELECTOR, "button.result-open").click()
    detail = browser.find_element(By.ID, "detail")
    wait(browser).until(lambda d: detail.is_displayed() and text(d, "detail-path") == second_path)
    wait(browser).until(lambda d: " × " in text(d, "detail-meta"))  # /api/images answered: its size
    assert browser.find_elements(By.CSS_SELECTOR, "#detail-palette li")
    wait(browser).until(lambda d: d.execute_script(
        "const i = document.getElementById('detail-image');"
        "return i.src.includes('size=x-large') && i.complete && i.naturalWidth > 0;"))
    previous = text(browser, "summary")
    browser.find_element(By.ID, "more-like-this").click()
    wait(browser).until(lambda d: not detail.is_displayed())
    wait_first(browser, second_path, previous)
    assert results(browser)[0].get_attribute("data-id") == second_id
    assert "more like" in text(browser, "summary")

    # Escape closes the view again; the keyboard reaches every result.
    results(browser)[0].find_element(By.CSS_SELECTOR, "button.result-open").send_keys(Keys.ENTER)
    wait(browser).until(lambda d: detail.is_displayed())
    browser.find_element(By.ID, "more-like-this").send_keys(Keys.ESCAPE)
    wait(browser).until(lambda d: not detail.is_displayed())
    results(browser)[1].find_element(By.CSS_SELECTOR, "button.result-open").click()
    wait(browser).until(lambda d: detail.is_displayed() and text(d, "detail-path") != second_path)
    browser.find_element(By.ID, "detail-close").click()
    wait(browser).until(lambda d: not detail.is_displayed())
    assert_no_browser_errors(browser)
