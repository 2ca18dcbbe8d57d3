"""The names people use for colours (colour/names.py), with plain values: the xkcd survey's 949 beside the
CSS names, how a typed name is read, which wins where both have one, and the one line an unknown name gets;
then the same names through the CLI, the Python API and the web app's list."""

from __future__ import annotations

import subprocess

import pytest

from chromatica_watch.colour import names
from chromatica_watch.core.errors import UsageError
from chromatica_watch.search.ask import parse_ask
from chromatica_watch.search.query import parse_color_spec, parse_colors, split_specs
from tests.conftest import CLI


def test_the_shipped_list_is_the_xkcd_surveys_949() -> None:
    xkcd = names.xkcd_names()
    assert len(xkcd) == names.XKCD_COUNT == 949
    assert next(iter(xkcd)) == "cloudy blue" and list(xkcd)[-1] == "purple"  # the survey's order, as published
    assert xkcd["mustard"] == "#ceb301" and xkcd["dusty rose"] == "#c0737a" and xkcd["sage"] == "#87ae73"
    assert xkcd["burgundy"] == "#610023" and xkcd["bright red"] == "#ff000d" and xkcd["robin's egg"] == "#6dedfd"
    assert len(names.css_names()) == 147
    assert len(names.all_names()) == 949 + 147 - 49  # 49 spellings are both


@pytest.mark.parametrize("typed", ["dusty rose", "Dusty Rose", "dusty-rose", "DUSTY_ROSE", "  dusty   rose "])
def test_case_and_separators_do_not_matter(typed: str) -> None:
    assert names.name_rgb(typed) == (0xc0, 0x73, 0x7a)


def test_css_wins_where_both_spell_a_name_and_words_stay_xkcds() -> None:
    assert names.name_hex("teal") == "#008080"  # CSS; xkcd's teal is #029386
    assert names.name_hex("Orange") == "#ffa500"  # CSS; xkcd's #f97306
    assert names.name_hex("darkblue") == "#00008b" and names.name_hex("dark blue") == "#00035b"  # CSS, xkcd
    assert names.name_hex("dark slate gray") == "#2f4f4f"  # a CSS name in words, no xkcd name of them
    assert names.name_hex("blue/green") == "#0f9b8e" and names.name_hex("blue green") == "#137e6d"
    assert names.name_hex("no such colour") is None and names.name_hex("") is None


def test_a_bad_line_in_the_list_is_refused() -> None:
    assert names.parse_xkcd("# comment\nsage\t#87AE73\t\n") == {"sage": "#87ae73"}
    with pytest.raises(ValueError, match="line 2"):
        names.parse_xkcd("sage\t#87ae73\nbright red\t#ff000\n")


def test_an_unknown_name_gets_one_line_with_the_nearest_names() -> None:
    with pytest.raises(UsageError) as info:
        parse_color_spec("mustrad:0.3")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown colour 'mustrad' in 'mustrad:0.3': did you mean 'mustard'")
    with pytest.raises(UsageError, match=r"^bad color 'qxzv': expected a hex colour"):  # nothing close: the forms
        parse_color_spec("qxzv")


def test_names_of_several_words_are_one_colour_wherever_colours_are_typed() -> None:
    assert split_specs(["dusty rose:0.3 teal", "blue green,red", "teal orange"]) == \
        ["dusty rose:0.3", "teal", "blue green", "red", "teal", "orange"]
    assert split_specs(["dusty rse teal", "qq:0.2 zz"]) == ["dusty rse", "teal", "qq:0.2", "zz"]  # unknown as typed
    assert [c.hex for c in parse_colors(["mustard:3", "dusty rose:1"])] == ["#ceb301", "#c0737a"]
    ask = parse_ask(["sage:0.3"], avoid=["burgundy:0.1"])
    assert [c.hex for c in ask.contains] == ["#87ae73"] and [c.hex for c in ask.avoid] == ["#610023"]


def test_the_cli_reads_xkcd_names_and_says_the_nearest_for_an_unknown_one() -> None:
    proc = subprocess.run([CLI, "search", "--color", "dusty rse", "--index-dir", "/nonexistent"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("chromatica-watch: error: unknown colour 'dusty rse': did you mean 'dusty rose', ")
