"""The interactive HTML pages: self-contained files (checked without a browser), and in
headless Chromium (selenium) pages that load offline, without errors, whose controls
change what is shown. The browser tests skip, saying why, where Chromium, chromedriver or
selenium is missing. Screenshots go to ``tmp_path`` and, with ``CAPTUM_GMAR_ARTEFACTS``
set, to that folder too."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_gmar.cli import main
from captum_gmar.pages import ExplanationPage, comparison_report, explanation_page, gallery_card
from captum_gmar.pages.render import Markup, element, fill, page_content, template
from tests.browser import chromium, screenshot


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    """A page written by ``explain --out page.html`` with the bundled model: GMAR, whose
    head weights it shows, and rollout, for its top classes."""
    folder = tmp_path_factory.mktemp("page")
    photo = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photo)
    out = folder / "sub" / "page.html"
    assert main(["explain", str(photo), "--methods", "gmar-l1,rollout", "--device", "cpu", "--out", str(out)]) == 0
    return out


def data_of(text: str) -> dict:
    """The JSON the page embeds."""
    return json.loads(re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', text, re.DOTALL).group(1))


def decode_png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw))


def test_the_page_is_one_file_with_everything_inline(page_file):
    text = page_file.read_text(encoding="utf-8")
    assert [p.name for p in page_file.parent.iterdir()] == ["page.html"]  # nothing beside it
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched
    assert "<link" not in text and "@import" not in text
    assert 20_000 < len(text) < 2_000_000
    data = data_of(text)
    assert [m["name"] for m in data["methods"]] == ["GMAR (L1)", "Attention rollout"]
    assert len(data["targets"]) == 3  # the top classes
    uris = re.findall(r'src="(data:[^"]+)"', text) + [data["colourbar"]]
    for method in data["methods"]:
        for shown in method["maps"]:
            uris += [shown["own"]["src"], shown["shared"]["src"]]
            assert shown["shared"]["scale"] >= shown["own"]["scale"] > 0
    assert len(uris) == 3 + 2 * 3 * 2
    for uri in uris:
        assert decode_png(uri).size[0] > 0
    gmar, rollout = data["methods"]
    assert rollout["heads"] is None
    weights = np.array(gmar["heads"][0]["values"])  # (layers, heads), each layer summing to 1
    assert weights.ndim == 2 and np.allclose(weights.sum(1), 1, atol=1e-2)


def test_the_page_api_and_its_bad_input(tmp_path):
    image = np.random.default_rng(0).random((16, 24, 3))
    maps = torch.rand(2, 16, 24)
    page = explanation_page(image, {"A </script> method": maps}, ["cat <b>", "dog"], scores=[("cat <b>", 0.9)], title="T & <i> {{DATA}}")
    assert isinstance(page, ExplanationPage) and page.html.startswith("<!DOCTYPE html>")
    assert page._repr_html_() in page.html and "<html" not in page._repr_html_()  # a fragment for a notebook
    assert "<title>T &amp; &lt;i&gt; {{DATA}}</title>" in page.html  # a placeholder in a value stays as it is
    assert "T &amp; &lt;i&gt;" in page.html and "cat &lt;b&gt;" in page.html  # escaped in the HTML
    assert data_of(page.html)["methods"][0]["name"] == "A </script> method"  # and intact in the JSON
    assert page.save(tmp_path / "new" / "p.html").read_text(encoding="utf-8") == page.html
    assert explanation_page(image, {"m": maps}, ["a", "b"]).html != page.html
    with pytest.raises(ValueError, match=r"expected \(2, 16, 24\)"):
        explanation_page(image, {"m": maps[:1]}, ["a", "b"])
    large = data_of(explanation_page(np.zeros((300, 600, 3)), {"m": torch.rand(1, 300, 600)}, ["a"], max_side=400).html)
    assert decode_png(large["methods"][0]["maps"][0]["own"]["src"]).size == (400, 200)  # averaged down, (W, H)
    all_zero = data_of(explanation_page(image, {"m": torch.zeros(1, 16, 24)}, ["a"]).html)
    assert all_zero["methods"][0]["maps"][0]["own"]["scale"] == 0


def test_slots_are_filled_with_escaped_text_and_markup_as_it_is():
    text = '<p title="<!--slot:tip-->"><!--slot:text--></p><!--slot:markup--><style>/*slot:id*/ b {}</style>'
    filled = fill(text, {"tip": '"x" & y', "text": "<b>a</b> <!--slot:tip-->", "markup": Markup("<i>ok</i>"), "id": Markup("#cg1")})
    assert isinstance(filled, Markup)
    assert filled == '<p title="&quot;x&quot; &amp; y">&lt;b&gt;a&lt;/b&gt; &lt;!--slot:tip--&gt;</p><i>ok</i><style>#cg1 b {}</style>'
    assert fill("<!--slot:a--><!--slot:a-->", {"a": Markup("<!--slot:a-->")}) == "<!--slot:a--><!--slot:a-->"  # one pass
    with pytest.raises(ValueError, match=r"slots without a value: \['text'\], values for no slot: \[\]"):
        fill(text, {"tip": "", "markup": "", "id": ""})
    with pytest.raises(ValueError, match=r"slots without a value: \[\], values for no slot: \['extra'\]"):
        fill(text, {"tip": "", "text": "", "markup": "", "id": "", "extra": ""})
    with pytest.raises(TypeError, match="must be a str, got int"):
        fill("<!--slot:n-->", {"n": 3})


def test_elements_escape_their_text_and_attributes():
    cell = element("td", "a < b", data_value='1" onclick="x', class_="cg")
    assert cell == '<td data-value="1&quot; onclick=&quot;x" class="cg">a &lt; b</td>'
    assert element("tr", cell, "&") == f"<tr>{cell}&amp;</tr>"  # markup children as they are, text escaped


def test_a_page_id_must_be_an_identifier():
    for bad in ["", "1cg", 'cg" onload="x', "cg-1", "cg{}"]:
        with pytest.raises(ValueError, match="a page's id is letters, digits and '_'"):
            page_content("report", bad)


def test_the_templates_are_package_data():
    from importlib import resources

    folder = resources.files("captum_gmar.pages") / "templates"
    names = sorted(entry.name for entry in folder.iterdir())
    assert names == [
        "document.html",
        "explanation.html",
        "explanation.js",
        "explore.html",
        "explore.js",
        "pages.css",
        "report.html",
        "report.js",
    ]
    for name in names:
        text = template(name)
        assert text == (folder / name).read_text(encoding="utf-8") and text.endswith("\n")
        assert "</script" not in text.lower() or name.endswith(".html")  # inlined in script and style elements
        assert "</style" not in text.lower() or name.endswith(".html")
    assert 'textContent = "layer \\\\ head"' in template("explanation.js")  # a JS escape, written once
    assert 'content: " \\25B2"' in template("pages.css")


def test_each_page_is_one_file_with_the_stylesheet_inline_once():
    image = np.random.default_rng(0).random((16, 24, 3))
    card = gallery_card(image, {"m": torch.rand(16, 24)}, "item", "cat", {"m": {"gini": 0.5}})
    pages = [
        explanation_page(image, {"m": torch.rand(1, 16, 24)}, ["cat"], scores=[("cat", 0.9)]),
        comparison_report([{"method": "m", "gini": 0.5, "gini_sem": 0.01}], {"gini": "Gini"}, ["model: m"], ["m"], [card]),
    ]
    ids = []
    for page in pages:
        text = page.html
        page_id = re.search(r'<main id="(cg[0-9a-f]{8})" class="cg-(explanation|report)">', text).group(1)
        ids.append(page_id)
        assert text.count("<style>") == text.count("</style>") == 1 and "<link" not in text and "@import" not in text
        assert text.count(fill(template("pages.css"), {"id": Markup(page_id)})) == 1  # the one stylesheet, whole
        assert text.count("<script>") == 1 and "slot:" not in text
        style = re.search(r"<style>(.*)</style>", text, re.DOTALL).group(1)
        selectors = [s.strip() for rule in re.sub(r"/\*.*?\*/", "", style).split("}") if "{" in rule for s in rule.split("{")[0].split(",")]
        assert selectors and all(re.match(f"#{page_id}\\b", s) for s in selectors)  # scoped: two pages share a notebook
    assert ids[0] != ids[1]


def test_explain_html_keeps_the_outputs_checks(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (tmp_path / "page.htm", "or .html for an interactive page"),
        (tmp_path, "is a folder: name the figure file"),
        (a_file / "sub" / "page.html", f"{str(a_file)!r} is a file, so no folder can be made there"),
    ]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/self/page.html"), "'/proc/self' is not writable"))
    for out, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["explain", str(photo), "--out", str(out)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_the_page_in_a_browser(page_file, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver = chromium()
    try:
        driver.get(page_file.as_uri())
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not severe, severe
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert not [name for name in fetched if name.startswith(("http:", "https:"))], fetched
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 4
        for image in images:
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
            assert image.get_attribute("alt")
        for control in driver.find_elements(By.CSS_SELECTOR, "select, input"):  # every control labelled
            assert driver.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
        screenshot(driver, tmp_path, "explanation_page.png")

        overlay = driver.find_element(By.CSS_SELECTOR, "img.cg-overlay")
        first = overlay.get_attribute("src")
        assert driver.find_elements(By.CSS_SELECTOR, "table.cg-heads")  # GMAR's head weights
        method, target, scale = (Select(element) for element in driver.find_elements(By.TAG_NAME, "select"))
        method.select_by_visible_text("Attention rollout")
        assert overlay.get_attribute("src") != first
        assert not driver.find_elements(By.CSS_SELECTOR, "table.cg-heads")  # rollout has none
        # GMAR's maps differ by class (rollout's do not): a class whose own scale is below the
        # shared one, so that choosing it, and then the shared scale, changes the picture
        method.select_by_visible_text("GMAR (L1)")
        before = overlay.get_attribute("src")
        gmar_maps = data_of(page_file.read_text(encoding="utf-8"))["methods"][0]["maps"]
        dimmer = next(t for t, shown in enumerate(gmar_maps) if shown["own"]["scale"] < shown["shared"]["scale"])
        target.select_by_index(dimmer)
        assert dimmer == 0 or overlay.get_attribute("src") != before
        assert driver.find_element(By.CSS_SELECTOR, "[id$='-mapcaption']").text == "GMAR (L1): " + target.first_selected_option.text
        before = overlay.get_attribute("src")
        scale.select_by_value("shared")
        assert overlay.get_attribute("src") != before
        opacity = driver.find_element(By.CSS_SELECTOR, "input[type=range]")
        assert overlay.value_of_css_property("opacity") == "0.7"
        opacity.send_keys(Keys.HOME)  # the keyboard works the slider
        assert overlay.value_of_css_property("opacity") == "0"
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        screenshot(driver, tmp_path, "explanation_page_rollout.png")
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, fashion_mnist) -> Path:
    """``report.html`` of a comparison on 6 scenes with the bundled model, 4 in its gallery."""
    out = tmp_path_factory.mktemp("report") / "out"
    argv = [
        "compare",
        "--scenes",
        "6",
        "--methods",
        "gmar-l1,rollout,saliency",
        "--metrics",
        "localisation",
        "--device",
        "cpu",
        "--figure-rows",
        "0",
        "--gallery",
        "4",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out / "report.html"


def test_the_report_is_one_file_with_everything_inline(report_file):
    text = report_file.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text) and "<link" not in text
    assert "command: captum-gmar " in text and "device: cpu" in text
    explained = len({row["item"] for row in csv.DictReader((report_file.parent / "results.csv").open())})
    assert explained > 4 and f"{explained - 4} more were explained but are not shown" in text  # 4 shown
    data = data_of(text)
    assert data["methods"] == ["GMAR (L1)", "Attention rollout", "Saliency"] and len(data["gallery"]) == 4
    for card in data["gallery"]:
        for uri in [card["image"], *card["maps"].values()]:
            assert decode_png(uri).size[0] > 0
        assert set(card["metrics"]) == set(data["methods"]) and "mass_inside" in card["metrics"]["Saliency"]
    assert len(text) < 1_000_000


def test_a_gallery_card_holds_thumbnails_only_and_the_report_checks_its_methods():
    image = np.random.default_rng(0).random((300, 200, 3))
    sharp = torch.zeros(300, 200)
    sharp[10, 10] = 1.0  # one bright pixel: coloured at full size, then shrunk
    card = gallery_card(
        image, {"a": torch.rand(300, 200), "b": sharp}, "item 0", "cat", {"a": {"gini": 0.5, "x": float("nan")}}, thumbnail=48
    )
    assert all(decode_png(uri).size == (32, 48) for uri in [card["image"], *card["maps"].values()])  # (width, height)
    assert card["metrics"] == {"a": {"gini": 0.5}} and card["class"] == "cat"
    page = comparison_report([{"method": "a", "gini": 0.5, "gini_sem": 0.01}], {"gini": "Gini"}, ["model: m"], ["a", "b"], [card])
    assert len(data_of(page.html)["gallery"]) == 1
    with pytest.raises(ValueError, match=r"needs a map of each method \['a', 'b', 'c'\], one has \['a', 'b'\]"):
        comparison_report([{"method": "a"}], {}, [], ["a", "b", "c"], [card])


def test_a_gallery_too_large_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--gallery", "201"])
    assert exit_info.value.code == 2 and "must be at most 200, got 201" in capsys.readouterr().err


def test_the_report_in_a_browser(report_file, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = chromium()
    try:
        driver.get(report_file.as_uri())
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert not [name for name in fetched if name.startswith(("http:", "https:"))], fetched
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 4 * 4
        assert all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0 for image in images)
        assert all(image.get_attribute("alt") for image in images)
        screenshot(driver, tmp_path, "comparison_report.png")

        def methods() -> list[str]:
            return [row.find_element(By.TAG_NAME, "th").text for row in driver.find_elements(By.CSS_SELECTOR, "table.cg-summary tbody tr")]

        def column(name: str) -> list[float]:
            index = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "table.cg-summary thead th")].index(name)
            return [
                float(row.find_elements(By.CSS_SELECTOR, "th, td")[index].get_attribute("data-value"))
                for row in driver.find_elements(By.CSS_SELECTOR, "table.cg-summary tbody tr")
            ]

        assert methods() == ["GMAR (L1)", "Attention rollout", "Saliency"]
        header = driver.find_element(By.XPATH, "//table[contains(@class, 'cg-summary')]//thead//button[text()='mass_inside']")
        header.click()
        assert column("mass_inside") == sorted(column("mass_inside"))
        header.click()
        assert column("mass_inside") == sorted(column("mass_inside"), reverse=True)
        driver.find_element(By.XPATH, "//table[contains(@class, 'cg-summary')]//thead//button[text()='method']").click()
        assert methods() == sorted(methods())

        def cards() -> list[str]:
            return [card.find_element(By.TAG_NAME, "div").text for card in driver.find_elements(By.CSS_SELECTOR, ".cg-card")]

        first = cards()
        assert len(first) == 4 and first[0].startswith("item 0: ")
        sort, order, filter_ = (Select(element) for element in driver.find_elements(By.CSS_SELECTOR, ".cg-controls select"))
        sort.select_by_visible_text("Saliency: gini")
        order.select_by_value("-1")
        data = data_of(driver.page_source)
        gini = {card["title"]: card["metrics"]["Saliency"]["gini"] for card in data["gallery"]}
        assert [gini[title] for title in cards()] == sorted(gini.values(), reverse=True)
        wanted = filter_.options[1].get_attribute("value")
        filter_.select_by_index(1)
        assert 0 < len(cards()) < 4 or all(card["class"] == wanted for card in data["gallery"])
        assert all(card["class"] == wanted for card in data["gallery"] if card["title"] in cards())
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()


#: names that end or derail a script element, or break a line in older JavaScript
HOSTILE = ["<!--<script>", "</script><b>x", "a & b > c\u2028d\u2029e"]


def test_hostile_names_stay_data_in_the_page_and_the_report(tmp_path):
    """Labels, method names and file names are data: in the browser every choice and every
    map is still there, with the names shown as given, and no script they hold runs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    image = np.random.default_rng(0).random((16, 24, 3))
    page = explanation_page(
        image,
        {HOSTILE[0]: torch.rand(3, 16, 24), "rollout": torch.rand(3, 16, 24)},
        HOSTILE,
        head_weights={HOSTILE[0]: torch.rand(3, 2, 4)},
        scores=[(name, 0.3) for name in HOSTILE],
        title=HOSTILE[1],
    ).save(tmp_path / "page.html")
    card = gallery_card(image, {HOSTILE[0]: torch.rand(16, 24)}, HOSTILE[1], HOSTILE[0], {HOSTILE[0]: {"gini": 0.5}})
    report = comparison_report(
        [{"method": HOSTILE[0], "gini": 0.5, "gini_sem": 0.01}], {"gini": HOSTILE[2]}, HOSTILE, [HOSTILE[0]], [card], title=HOSTILE[0]
    ).save(tmp_path / "report.html")
    for saved in (page, report):
        assert data_of(saved.read_text(encoding="utf-8"))  # the embedded JSON is whole

    driver = chromium()
    try:
        driver.get(page.as_uri())
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        method, target, _ = (Select(element) for element in driver.find_elements(By.TAG_NAME, "select"))
        assert [o.get_attribute("textContent") for o in method.options] == [HOSTILE[0], "rollout"]
        assert [o.get_attribute("textContent") for o in target.options] == HOSTILE
        overlay = driver.find_element(By.CSS_SELECTOR, "img.cg-overlay")
        assert overlay.get_attribute("src").startswith("data:image/png;base64,")
        assert driver.find_elements(By.CSS_SELECTOR, "table.cg-heads")
        assert driver.find_element(By.TAG_NAME, "h1").text == HOSTILE[1]
        assert not driver.find_elements(By.XPATH, "//b[text()='x']")  # the name's markup is text, not an element
        screenshot(driver, tmp_path, "hostile_page.png")

        driver.get(report.as_uri())
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        cards = driver.find_elements(By.CSS_SELECTOR, ".cg-card")
        assert len(cards) == 1 and cards[0].find_element(By.TAG_NAME, "div").get_attribute("textContent") == HOSTILE[1]
        classes = Select(driver.find_elements(By.CSS_SELECTOR, ".cg-controls select")[2])
        assert [o.get_attribute("textContent") for o in classes.options] == ["all", HOSTILE[0]]
        screenshot(driver, tmp_path, "hostile_report.png")
    finally:
        driver.quit()


def test_the_sorted_columns_mark_is_an_arrow_in_the_browser(tmp_path):
    from selenium.webdriver.common.by import By

    summary = [{"method": "a", "gini": 0.5, "gini_sem": 0.01}, {"method": "b", "gini": 0.2, "gini_sem": 0.01}]
    report = comparison_report(summary, {"gini": "Gini index"}, [], [], []).save(tmp_path / "report.html")
    driver = chromium()
    try:
        driver.get(report.as_uri())
        button = driver.find_element(By.XPATH, "//thead//button[text()='gini']")
        marks = []
        for _ in range(2):
            button.click()
            marks.append(driver.execute_script("return getComputedStyle(arguments[0], '::after').content", button))
        assert marks == ['" \u25b2"', '" \u25bc"']  # the arrows, not the escape's text
    finally:
        driver.quit()


def test_a_gallery_alone_in_a_browser(tmp_path):
    """A maps folder's page: no summary table, the class filter works, no script error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    image = np.random.default_rng(0).random((64, 64, 3))
    cards = [
        gallery_card(image, {"gmar-l1": torch.rand(64, 64)}, f"{k}.png: {name}", name, {}) for k, name in enumerate(["cat", "dog", "cat"])
    ]
    path = tmp_path / "report.html"
    comparison_report([], {}, ["model: m"], ["gmar-l1"], cards, left_out=5, title="Maps", left_out_where="index.csv").save(path)
    driver = chromium()
    try:
        driver.get(path.as_uri())
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not driver.find_elements(By.CSS_SELECTOR, "table.cg-summary")
        assert "5 more were explained but are not shown (they are in index.csv)" in driver.page_source
        assert len(driver.find_elements(By.TAG_NAME, "img")) == 6
        Select(driver.find_element(By.CSS_SELECTOR, "select[id$='-class']")).select_by_visible_text("cat")
        assert len([c for c in driver.find_elements(By.CSS_SELECTOR, ".cg-card") if c.is_displayed()]) == 2
        screenshot(driver, tmp_path, "maps_gallery.png")
    finally:
        driver.quit()
