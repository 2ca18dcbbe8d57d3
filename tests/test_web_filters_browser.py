"""The web app's colour filters in a real browser (Debian's headless Chromium, driven by Selenium), on one
real daemon indexing generated scenes, look-alike plain photos, black-and-white photos and JPEGs with EXIF
dates: "contains at least 25%" of a colour, colours to avoid, black and white, a date range, and a bad
value shown as the server's one line. Every check is on the results the page shows.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.conftest import photo, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv
from tests.test_contain_search import BACKGROUNDS, plain, scene, toned
from tests.test_filters_e2e import exif_jpeg
from tests.test_web_browser import App, assert_no_browser_errors, chromium, keep_colors, open_app, results, text, wait

ORANGE = "#f58214"
RED = (250, 10, 10)
LOOKALIKES = {"gold": (255, 215, 0), "rust": (0xA8, 0x3C, 0x09), "salmon": (250, 128, 114), "tan": (210, 180, 140),
              "brown": (150, 75, 0)}
# (name, colour, date taken, camera make and model)
DATED = (("2023-winter.jpg", (200, 60, 120), "2023:01:02 08:30:00", "Canon", "Canon EOS R5"),
         ("2024-june.jpg", (0, 128, 128), "2024:06:01 00:10:00", "Canon", "Canon EOS R5"),
         ("2024-july.jpg", (60, 100, 220), "2024:07:15 10:00:00", "Google", "Pixel 8"),
         ("2024-august-last.jpg", (40, 130, 45), "2024:08:31 18:30:00", "Canon", "Canon EOS R5"),
         ("2024-september.jpg", (20, 40, 120), "2024:09:01 08:00:00", "Canon", "Canon EOS R5"))


def write_library(root: Path) -> int:
    """Orange objects on five backgrounds, plain look-alikes, red photos, black-and-white ones, dated JPEGs."""
    rng = np.random.default_rng(7)
    rgb = (0xF5, 0x82, 0x14)
    for n, background in enumerate(("sky", "grass", "street", "night", "snow", "sky")):
        write_rgb(root / "orange" / f"orange-{n}.png", scene(rng, BACKGROUNDS[background], rgb))
    for name, other in LOOKALIKES.items():
        write_rgb(root / "plain" / f"{name}.png", plain(rng, other))
    for n in range(2):
        write_rgb(root / "red" / f"red-{n}.png", plain(rng, RED))
    write_rgb(root / "red" / "red-object.png", scene(rng, BACKGROUNDS["sky"], RED, share=0.3))
    for name in ("astronaut", "coffee"):
        colour = np.ascontiguousarray(photo(name)[::4, ::4])
        grey = np.repeat(colour.mean(axis=2, keepdims=True), 3, 2).astype(np.uint8)
        write_rgb(root / "mono" / f"{name}-grey.png", grey)
        write_rgb(root / "mono" / f"{name}-sepia.png", toned(colour, (40, 26, 13), (240, 225, 200)))
        write_rgb(root / "colour" / f"{name}.png", colour)
    for name, colour_, taken, make, model in DATED:
        exif_jpeg(root / "dated" / name, colour_, taken, make, model)
    return sum(1 for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One daemon for the module: every test only reads."""
    base = tmp_path_factory.mktemp("web-filters")
    runtime = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))  # a Unix socket path is short
    env = DaemonEnv(base / "Pictures", base / "index", base / "state", runtime, base / "cw.toml")
    env.pictures.mkdir()
    n = write_library(env.pictures)
    env.write_config(web_port=0)
    try:
        env.start()
        wait_until(lambda: env.idle_with(n) and not env.status().get("details_pending"), timeout=90)
        url = env.status()["web_url"]
        yield App(env, url, n)
        assert env.stop() == 0
    finally:
        if env.proc is not None and env.proc.poll() is None:
            env.proc.kill()
            env.proc.wait(timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium") / "profile") as driver:
        yield driver


# -- helpers -------------------------------------------------------------------------------------
def labelled(driver: webdriver.Chrome, label: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[aria-label="{label}"]')


def set_value(driver: webdriver.Chrome, element: WebElement, value: str) -> None:
    """A value set as a user's edit ends (a date or colour picker's native dialog cannot be driven)."""
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
                          "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", element, value)


def search(driver: webdriver.Chrome) -> list[WebElement]:
    """Click Search and wait for its answer (the summary, blanked first, is written again with it)."""
    driver.execute_script("document.getElementById('summary').textContent = '';")
    driver.find_element(By.ID, "search").click()
    wait(driver).until(lambda d: text(d, "summary") and "busy" not in (d.find_element(By.TAG_NAME, "body")
                                                                        .get_attribute("class") or ""))
    return results(driver)


def names(cards: list[WebElement]) -> list[str]:
    return [Path(str(card.get_attribute("data-path"))).name for card in cards]


def folders(cards: list[WebElement]) -> list[str]:
    return [Path(str(card.get_attribute("data-path"))).parent.name for card in cards]


def share_shown(card: WebElement, hex_color: str) -> int:
    """The share of a colour the card shows, in %."""
    shown = card.find_element(By.CSS_SELECTOR, f'.share[data-hex="{hex_color}"]').text.strip()
    match = re.fullmatch(r"(<1|\d+)%", shown)
    assert match, shown
    return 0 if match[1] == "<1" else int(match[1])


def fresh_page(driver: webdriver.Chrome, app: App) -> None:
    """The app opened again, with no colour and no filter."""
    open_app(driver, app)
    keep_colors(driver, 0)
    assert text(driver, "colors-hint") == "any colour: the filters alone"


# -- the tests -----------------------------------------------------------------------------------
def test_some_orange_ranks_the_photos_holding_it_first_with_their_share(app: App, browser: webdriver.Chrome) -> None:
    open_app(browser, app)
    keep_colors(browser, 1)
    set_value(browser, labelled(browser, "Colour 1 as hex or a CSS name"), ORANGE)
    Select(labelled(browser, "Colour 1 mode")).select_by_visible_text("contains at least")
    set_value(browser, labelled(browser, "Colour 1: at least this share of the photo, in %"), "25")
    assert browser.find_element(By.CSS_SELECTOR, "#colors .color-weight-value").text == "≥ 25%"
    cards = search(browser)
    assert "color=%23f58214%3A0.25" in browser.execute_script("return location.hash;")
    # The six photos with an orange object come first, before the plain gold, rust, salmon, tan and brown ones.
    assert folders(cards[:6]) == ["orange"] * 6, names(cards)
    plain_ranks = [i for i, folder in enumerate(folders(cards)) if folder == "plain"]
    assert plain_ranks and min(plain_ranks) >= 6
    for card in cards[:6]:
        assert 15 <= share_shown(card, ORANGE) <= 35, card.text  # a quarter of the frame
        assert not card.find_elements(By.CSS_SELECTOR, ".result-score")  # no ΔE: not a palette distance
    # The plain look-alikes hold little of this orange, and their cards say so.
    assert all(share_shown(cards[i], ORANGE) < 15 for i in plain_ranks)

    # Two colours with shares summing to 100% or more cannot be "contained": the page says so, no request.
    browser.find_element(By.ID, "add-color").click()
    assert Select(labelled(browser, "Colour 2 mode")).first_selected_option.text == "contains at least"
    set_value(browser, labelled(browser, "Colour 1: at least this share of the photo, in %"), "60")
    set_value(browser, labelled(browser, "Colour 2: at least this share of the photo, in %"), "50")
    browser.find_element(By.ID, "search").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "add up to 110%" in text(browser, "error")
    assert_no_browser_errors(browser)


def test_colours_to_avoid_leave_the_red_photos_out(app: App, browser: webdriver.Chrome) -> None:
    fresh_page(browser, app)
    set_value(browser, browser.find_element(By.ID, "k"), "100")
    browser.find_element(By.ID, "add-avoid").click()
    set_value(browser, labelled(browser, "Colour to avoid 1 as hex or a CSS name"), "red")
    cards = search(browser)
    shown = names(cards)
    assert not [n for n in shown if n.startswith("red-")], shown
    assert {f"orange-{n}.png" for n in range(6)} <= set(shown)  # the rest is there: not everything dropped
    assert all(share_shown(card, "#ff0000") <= 5 for card in cards)
    assert not browser.find_element(By.ID, "pending").is_displayed()  # every photo's colours are known

    # With a larger share allowed (50%), the photo with a red object (30%) is back, the plain red ones not.
    set_value(browser, labelled(browser, "Colour to avoid 1: the most of it a photo may hold, in % (5 if blank)"),
              "50")
    cards = search(browser)
    shown = names(cards)
    assert "red-object.png" in shown and "red-0.png" not in shown and "red-1.png" not in shown, shown
    assert "not=%23ff0000%3A0.5" in browser.execute_script("return location.hash;")
    assert_no_browser_errors(browser)


def test_black_and_white_shows_only_the_greyscale_and_sepia_photos(app: App, browser: webdriver.Chrome) -> None:
    fresh_page(browser, app)
    Select(browser.find_element(By.ID, "tone")).select_by_visible_text("black and white")
    cards = search(browser)
    assert sorted(names(cards)) == ["astronaut-grey.png", "astronaut-sepia.png", "coffee-grey.png",
                                    "coffee-sepia.png"]
    assert "black and white" in text(browser, "summary")

    # And the other way: colorful leaves every one of them out.
    Select(browser.find_element(By.ID, "tone")).select_by_visible_text("colorful")
    set_value(browser, browser.find_element(By.ID, "k"), "100")
    shown = names(search(browser))
    assert "astronaut.png" in shown and not [n for n in shown if "-grey" in n or "-sepia" in n], shown
    assert_no_browser_errors(browser)


def test_a_date_range_shows_the_photos_taken_in_it_with_their_date(app: App, browser: webdriver.Chrome) -> None:
    fresh_page(browser, app)
    set_value(browser, browser.find_element(By.ID, "taken-from"), "2024-06-01")
    set_value(browser, browser.find_element(By.ID, "taken-until"), "2024-08-31")  # the last day included
    cards = search(browser)
    assert names(cards) == ["2024-august-last.jpg", "2024-july.jpg", "2024-june.jpg"]  # newest taken first
    days = [card.find_element(By.CSS_SELECTOR, ".result-taken") for card in cards]
    assert [d.text for d in days] == ["2024-08-31", "2024-07-15", "2024-06-01"]
    assert all(d.get_attribute("data-source") == "exif" for d in days)

    # The address keeps the search: reloaded, the page shows the same dates and the same answer.
    browser.refresh()
    wait(browser).until(lambda d: names(results(d)) == ["2024-august-last.jpg", "2024-july.jpg", "2024-june.jpg"])
    assert browser.find_element(By.ID, "taken-until").get_attribute("value") == "2024-08-31"

    # With a camera too; and a photo with no date in it shows its file's date, said so.
    set_value(browser, browser.find_element(By.ID, "camera"), "pixel")
    assert names(search(browser)) == ["2024-july.jpg"]
    browser.find_element(By.ID, "clear-filters").click()
    set_value(browser, browser.find_element(By.ID, "folder"), str(app.env.pictures / "mono"))
    card = search(browser)[0]
    taken = card.find_element(By.CSS_SELECTOR, ".result-taken")
    assert taken.get_attribute("data-source") == "mtime" and "file date" in taken.text

    # A bad value is the server's one line where errors show; a relative folder is caught before asking.
    set_value(browser, browser.find_element(By.ID, "folder"), "/nowhere/at/all")
    browser.find_element(By.ID, "search").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "not a folder under a watched root" in text(browser, "error")
    assert "\n" not in text(browser, "error")
    set_value(browser, browser.find_element(By.ID, "folder"), "mono")
    browser.find_element(By.ID, "search").click()
    wait(browser).until(lambda d: "is not a full path" in text(d, "error"))
    # The server's refusal (400) is logged by the browser as a failed request: that one, and nothing else.
    errors = [e["message"] for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert all("/api/search" in e and "400" in e for e in errors), errors


def test_a_colour_name_is_read_as_a_search_reads_it(app: App, browser: webdriver.Chrome) -> None:
    """The names come from the daemon (/api/colour-names), once: an xkcd survey name typed any way, a CSS name in
    words, and the one line for a name it does not know."""
    fresh_page(browser, app)
    keep_colors(browser, 1)
    field, picker = labelled(browser, "Colour 1 as hex or a CSS name"), labelled(browser, "Colour 1")
    for typed, wanted in (("Dusty-Rose", "#c0737a"), ("mustard", "#ceb301"), ("dark slate gray", "#2f4f4f"),
                          ("teal", "#008080")):  # CSS's teal, as the daemon reads it, not xkcd's #029386
        set_value(browser, field, typed)
        wait(browser).until(lambda d: picker.get_attribute("value") == wanted)
        assert "invalid" not in (field.get_attribute("class") or "")
    set_value(browser, field, "sage")
    search(browser)
    assert "color=%2387ae73" in browser.execute_script("return location.hash;")  # sent as the hex it names
    set_value(browser, field, "dusty rse")
    assert "invalid" in (field.get_attribute("class") or "")
    browser.find_element(By.ID, "search").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "“dusty rse” is not a colour" in text(browser, "error")
    assert_no_browser_errors(browser)
