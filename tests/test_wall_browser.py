"""The colour wall and the library's palette in Debian's headless Chromium, on a real daemon (issue 25): the
wall lays the library out round the hue wheel and loads more as it is scrolled; the palette shows the colours
most photos hold, sized by how many, and a click on one shows the photos holding the most of it first.
Set CHROMATICA_SCREENSHOTS=docs/ to refresh the README's screenshots of both."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from chromatica_watch.imaging.lab import srgb_to_lab
from tests.conftest import photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv
from tests.test_web_browser import App, assert_no_browser_errors, chromium, open_app, results, text, wait

PAGE = 120  # wall.js's page


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


@pytest.fixture
def library(daemon_env: DaemonEnv) -> Iterator[App]:
    """40 teal photos (the most held colour), 20 orange, and 86 more round the wheel and in grey: 146, more
    than a page of the wall."""
    pictures = daemon_env.pictures
    names: list[str] = []
    for n in range(40):
        names.append(f"teal/teal{n:02}.png")
        write_rgb(pictures / names[-1], solid(_hsv(0.5, 1.0, 0.45 + n * 0.002)))
    for n in range(20):
        names.append(f"orange/orange{n:02}.png")
        write_rgb(pictures / names[-1], solid(_hsv(0.08, 0.9, 0.9 + n * 0.002)))
    for n in range(80):  # ten of each hue, none near teal or orange
        names.append(f"wheel/hue{n:02}.png")
        hue = (0.0, 0.17, 0.25, 0.33, 0.66, 0.75, 0.83, 0.92)[n % 8]
        write_rgb(pictures / names[-1], solid(_hsv(hue, 0.55 + (n // 8) * 0.04, 0.5 + (n // 8) * 0.04)))
    for n in range(3):
        names.append(f"grey/grey{n}.png")
        write_rgb(pictures / names[-1], solid((40 + 90 * n,) * 3))
    for which in ("coffee", "astronaut", "rocket"):
        names.append(f"photos/{which}.jpg")
        write_rgb(pictures / names[-1], photo(which), IMWRITE_JPEG_QUALITY=90)
    daemon_env.write_config(web_port=0)
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(len(names)), timeout=120)
    yield App(daemon_env, daemon_env.status()["web_url"], len(names))
    assert daemon_env.stop() == 0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def tiles(driver: webdriver.Chrome) -> list[str]:
    """The wall's photos, as their paths, in the order shown."""
    return list(driver.execute_script("return [...document.querySelectorAll('#wall li[data-id]')]"
                                      ".map(li => li.dataset.path);"))


def near(hex_color: str, rgb: tuple[int, int, int], within: float = 10.0) -> bool:
    shown = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    lab = srgb_to_lab(np.array([shown, rgb], np.float32) / 255.0)
    return bool(np.linalg.norm(lab[0] - lab[1]) < within)


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    folder = os.environ.get("CHROMATICA_SCREENSHOTS")
    if folder:
        Path(folder, name).write_bytes(driver.get_screenshot_as_png())


def test_the_wall_lays_the_library_out_by_colour_and_loads_more_as_it_scrolls(library: App,
                                                                                browser: webdriver.Chrome) -> None:
    open_app(browser, library)
    browser.find_element(By.ID, "view-wall").click()
    wait(browser).until(lambda d: len(tiles(d)) == PAGE)
    assert browser.find_element(By.ID, "results-view").is_displayed() is False
    assert f"{PAGE} of {library.indexed} photos" in text(browser, "wall-summary")
    wait(browser).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#wall img')].filter(i => i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete && i.naturalWidth > 0);"))
    screenshot(browser, "screenshot-wall.png")
    browser.execute_script("document.getElementById('wall-more').scrollIntoView();")
    wait(browser).until(lambda d: len(tiles(d)) == library.indexed)
    assert f"{library.indexed} of {library.indexed} photos" in text(browser, "wall-summary")
    order = tiles(browser)
    assert len(set(order)) == library.indexed
    where = {kind: [n for n, p in enumerate(order) if f"/{kind}/" in p] for kind in ("orange", "teal", "grey")}
    assert max(where["orange"]) < min(where["teal"])  # round the wheel: orange before teal
    assert min(where["grey"]) >= library.indexed - 3 - 3  # the greys (and perhaps a greyish photo) last
    light, dark = (order.index(str(library.env.pictures / "grey" / f"grey{n}.png")) for n in (2, 0))
    assert light < dark  # white to black
    # A tile opens the photo's detail view, with its path.
    browser.execute_script("window.scrollTo(0, 0);")
    browser.find_elements(By.CSS_SELECTOR, "#wall .wall-tile")[0].click()
    wait(browser).until(lambda d: text(d, "detail-path") == order[0])
    assert_no_browser_errors(browser)


def test_a_swatch_of_the_library_palette_shows_the_photos_holding_that_colour_first(
        library: App, browser: webdriver.Chrome) -> None:
    open_app(browser, library)
    browser.find_element(By.ID, "view-wall").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#palette .palette-swatch"))
    swatches = browser.find_elements(By.CSS_SELECTOR, "#palette .palette-swatch")
    counts = [int(s.get_attribute("data-photos") or 0) for s in swatches]
    colours = [s.get_attribute("data-hex") or "" for s in swatches]
    assert counts == sorted(counts, reverse=True)
    # The 40 teal photos, each counted once (a real photo may hold some too), then the 20 orange ones.
    assert 40 <= counts[0] <= 43 and near(colours[0], _hsv(0.5, 1.0, 0.47))
    assert 20 <= counts[1] <= 23 and near(colours[1], _hsv(0.08, 0.9, 0.92))
    widths = [s.size["width"] for s in swatches[:2]]
    assert widths[0] > widths[1] * 1.5  # sized by how many photos hold it
    swatches[0].click()
    wait(browser).until(lambda d: len(results(d)) > 0 and d.find_element(By.ID, "results-view").is_displayed())
    shown = [r.get_attribute("data-path") or "" for r in results(browser)]
    screenshot(browser, "screenshot-palette.png")
    # "The results of the search", laid out by colour: the same photos.
    browser.find_element(By.ID, "view-wall").click()
    Select(browser.find_element(By.ID, "wall-scope")).select_by_value("results")
    wait(browser).until(lambda d: sorted(tiles(d)) == sorted(shown))
    assert all("/teal/" in p for p in shown[:20]), shown[:20]
    # The folder filter applies to the wall and its palette: only the orange folder's photos.
    Select(browser.find_element(By.ID, "wall-scope")).select_by_value("library")
    browser.find_element(By.ID, "folder").send_keys(str(library.env.pictures / "orange"))
    browser.find_element(By.ID, "view-results").click()
    browser.find_element(By.ID, "view-wall").click()
    wait(browser).until(lambda d: len(tiles(d)) == 20)
    wait(browser).until(lambda d: [int(s.get_attribute("data-photos") or 0) for s in
                                   d.find_elements(By.CSS_SELECTOR, "#palette .palette-swatch")][:1] == [20])
    assert_no_browser_errors(browser)
