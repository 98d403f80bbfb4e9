"""``explore.html`` in headless Chromium with the network off, opened from the disk: it
loads without errors or requests, opens on the most suspicious flagged cluster with an
overview of every group, the scatter draws, a cluster or a box selects the cards,
filters and sorts change them, and the URL restores the view. Screenshots go to
``tmp_path`` (and ``CAPTUM_GMAR_ARTEFACTS``)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_maps import planted_maps, write_folder

from captum_gmar import explore
from tests.browser import chromium, requested, screenshot

COUNT = 240


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    """An explore folder of 240 maps of class 0 (10% tagged) and 60 of class 1, three
    methods, with thumbnails."""
    root = tmp_path_factory.mktemp("page")
    maps, tagged = planted_maps(COUNT, seed=4)
    other, _ = planted_maps(60, tagged_share=0, seed=5)
    both = np.concatenate([maps, other])
    targets = np.array([0] * COUNT + [1] * 60)
    scores = np.random.default_rng(0).random(len(targets))
    write_folder(root / "maps", {"gmar-l1": both, "rollout": np.sqrt(both), "gae": np.roll(both, 3, axis=2)}, targets, scores)
    (root / "images" / "img").mkdir(parents=True)
    for i in range(len(targets)):
        pixels = np.full((32, 32, 3), 150, dtype=np.uint8)
        if i < COUNT and tagged[i]:
            pixels[:5, :5] = (255, 0, 0)
        Image.fromarray(pixels).save(root / "images" / "img" / f"{i}.png")
    explore(root / "maps", root / "exp", images=root / "images", neighbours=8, progress=False)
    return root / "exp"


def test_the_page_and_its_data_are_small_files_beside_it(exp):
    page = (exp / "explore.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", page)  # nothing from the network
    assert '<script src="explore-data/index.js"></script>' in page
    index = (exp / "explore-data" / "index.js").read_text()
    assert index.startswith("window.EXPLORE_INDEX = ")
    data = json.loads(index.removeprefix("window.EXPLORE_INDEX = ").rstrip().removesuffix(";"))
    assert data["rows"] == COUNT + 60 and data["methods"] == ["gmar-l1", "rollout", "gae"] and data["grids"]["gae"] == [14, 14]
    assert data["classes"] == [{"target": 0, "rows": COUNT, "file": "class-00000.js"}, {"target": 1, "rows": 60, "file": "class-00001.js"}]
    assert data["thumbs"] == {"side": 64, "sheet": 256, "sheets": 2} and not {"fields", "placements"} & set(data)  # no column of every row
    # each class's columns, and each method's places for them, in files of their own: typed arrays in base64
    rows = json.loads(
        (exp / "explore-data" / "class-00001.js").read_text().removeprefix("window.EXPLORE_CLASS(1, ").rstrip().removesuffix(");")
    )
    assert np.array_equal(np.frombuffer(base64.b64decode(rows["rows"]), "<i4"), np.arange(COUNT, COUNT + 60))
    place = json.loads(
        (exp / "explore-data" / "group-01-00000.js").read_text().removeprefix("window.EXPLORE_GROUP(1, 0, ").rstrip().removesuffix(");")
    )
    assert len(np.frombuffer(base64.b64decode(place["x"]), "<f4")) == COUNT
    chunk = (exp / "explore-data" / "maps-00000.js").read_text()
    assert chunk.startswith("window.EXPLORE_CHUNK(0, {") and '"names": ["img/0.png"' in chunk
    assert len(chunk) < (COUNT + 60) * (3 * 196 * 4 / 3 + 20) + 1000  # one byte per patch, base64, and the names


def rows(driver) -> list[int]:
    return driver.execute_script("return Array.from(document.querySelectorAll('.cg-card')).map(c => Number(c.dataset.row))")


def field(driver, name: str, method: str | None = None) -> list:
    """A column of the loaded classes, by row number (the page's EXPLORE_FIELD)."""
    return driver.execute_script(f"return EXPLORE_FIELD({json.dumps(name)}, {json.dumps(method)})")


def choose(driver, name: str, value: str) -> None:
    """Choose ``value`` in a control, and wait for the view (a class's files load first)."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    Select(driver.find_element("css selector", f"select[id$='-{name}']")).select_by_value(value)
    WebDriverWait(driver, 10).until(lambda d: d.find_element("css selector", "main").get_attribute("data-view"))


def test_the_page_offline_in_chromium(exp, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium("1300,1300")
    try:
        driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
        driver.get((exp / "explore.html").as_uri())
        main = driver.find_element("css selector", "main")
        WebDriverWait(driver, 10).until(lambda d: main.get_attribute("data-ready-ms"))
        # it opens on the overview's first group, a flagged one, its flagged cluster chosen: the tagged maps
        verdict = driver.find_element("css selector", "[id$='-verdict']").text
        assert (
            verdict.startswith("3 of the 6 method-and-class groups have a flagged cluster")
            and "(suspicion 0.9 or more for a cluster of 20 maps or more, up to 0.99 at 8; none of fewer)" in verdict
        )
        assert "at most 5% of method-and-class groups had a flagged cluster" in verdict
        overview = [
            [td.text for td in tr.find_elements("css selector", "td")]
            for tr in driver.find_elements("css selector", "[id$='-overview'] tbody tr")
        ]
        assert [row[5] != "0" for row in overview] == [True] * 3 + [False] * 3 and all(row[2] == "0: class 0" for row in overview[:3])
        suspicions = [float(row[6]) for row in overview]
        assert suspicions[:3] == sorted(suspicions[:3], reverse=True) and min(suspicions[:3]) >= 0.9 > max(suspicions[3:])
        assert driver.find_element("css selector", "[id$='-overview'] tbody tr").get_attribute("class") == "cg-current"
        assert "sel=cluster" in driver.current_url and f"m={overview[0][1]}" in driver.current_url
        opened = field(driver, "rank", overview[0][1])
        tagged = {r for r in range(COUNT) if Image.open(exp.parent / "images" / "img" / f"{r}.png").getpixel((0, 0)) == (255, 0, 0)}
        assert set(rows(driver)) == {r for r in range(COUNT) if opened[r] == 1} and len(set(rows(driver)) & tagged) >= 0.9 * len(tagged)
        steps = driver.find_element("css selector", ".cg-cluster.cg-flagged .cg-next").text
        assert "What next" in steps and "captum-gmar heads " in steps and f" --out {exp}/heads/" in steps  # the page's own folder
        # explored without a model: nothing confirmed, so no repair is offered, and the page says why
        assert (
            "captum-gmar repair" not in steps
            and "Repair: offered once the transplant confirms the cluster (explore with --model runs it)" in steps
        )
        eigen = driver.find_element("css selector", "[id$='eigen-note']").text
        assert re.search(
            r"the gap after the 1st does not count, however large; the largest gap after the 2nd or a later one is after the \d+\w\w", eigen
        )
        screenshot(driver, tmp_path, "explore_opened.png")
        choose(driver, "method", "gmar-l1")
        driver.find_element("css selector", "button[id$='-clear']").click()
        # the scatter: every map of the class, gmar-l1's
        assert main.get_attribute("data-drawn") == str(COUNT)
        assert driver.find_element("css selector", "[role=status]").text.startswith("gmar-l1, explained class class 0: 240 maps")
        # the cards: the first page, by disagreement, highest first; every method's map drawn
        disagreement = field(driver, "disagreement")
        shown = rows(driver)
        assert len(shown) == 40 and [disagreement[r] for r in shown] == sorted((disagreement[r] for r in range(COUNT)), reverse=True)[:40]
        WebDriverWait(driver, 10).until(
            lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('.cg-card canvas')).every(c => c.width === 14 && "
                "c.getContext('2d').getImageData(0, 0, 14, 14).data.some((v, i) => i % 4 !== 3 && v > 0))"
            )
        )
        assert len(driver.find_elements("css selector", ".cg-card canvas")) == 40 * 3
        screenshot(driver, tmp_path, "explore.png")
        # a click on the first-ranked cluster: its maps only, the tagged ones
        rank = field(driver, "rank", "gmar-l1")
        driver.find_element("css selector", ".cg-cluster").click()
        first = {r for r in range(COUNT) if rank[r] == 1}
        assert set(rows(driver)) == first and "sel=cluster" in driver.current_url
        assert len(first & tagged) >= 0.9 * len(tagged) and len(first & tagged) >= 0.9 * len(first)
        screenshot(driver, tmp_path, "explore_cluster.png")
        # filters: a label, then wrong predictions
        choose(driver, "label", "1")
        label, predicted = field(driver, "label"), field(driver, "predicted")
        assert rows(driver) and all(label[r] == 1 and rank[r] == 1 for r in rows(driver))
        driver.find_element("css selector", "button[id$='-clear']").click()
        choose(driver, "correct", "wrong")
        kept = rows(driver)
        assert len(kept) == 40 and all(label[r] == 1 and label[r] != predicted[r] for r in kept)
        # sorts: score, ascending; cluster, most suspicious first
        choose(driver, "label", "")
        choose(driver, "correct", "")
        choose(driver, "sort", "score")
        choose(driver, "order", "1")
        score = field(driver, "score")
        assert [score[r] for r in rows(driver)] == sorted(score[r] for r in range(COUNT))[:40]
        choose(driver, "sort", "margin")
        margin = field(driver, "margin")
        assert [margin[r] for r in rows(driver)] == sorted(margin[r] for r in range(COUNT))[:40]
        choose(driver, "sort", "cluster")
        choose(driver, "order", "-1")
        assert [rank[r] for r in rows(driver)] == sorted(rank[r] for r in range(COUNT))[:40]
        # the next page of cards
        driver.find_element("css selector", "button[id$='-next']").click()
        assert len(rows(driver)) == 40 and "page=1" in driver.current_url
        # a box dragged on the scatter: the maps inside it
        canvas = driver.find_element("css selector", "canvas[id$='-scatter']")
        ActionChains(driver).move_to_element_with_offset(canvas, -200, -180).click_and_hold().move_by_offset(200, 360).release().perform()
        box = [float(v) for v in re.search(r"sel=box%3A([^&]+)", driver.current_url).group(1).split("%2C")]
        x, y = field(driver, "x", "gmar-l1"), field(driver, "y", "gmar-l1")
        inside = {r for r in range(COUNT) if box[0] <= x[r] <= box[2] and box[1] <= y[r] <= box[3]}
        assert 0 < len(inside) < COUNT and set(rows(driver)) <= inside and len(rows(driver)) == min(40, len(inside))
        # another method and class: its own scatter and clusters
        choose(driver, "method", "rollout")
        choose(driver, "class", "1")
        assert main.get_attribute("data-drawn") == "60" and "sel=&" in driver.current_url
        assert all(field(driver, "target")[r] == 1 for r in rows(driver))
        # the URL restores the view: a fresh load of a saved link
        choose(driver, "class", "0")
        driver.find_elements("css selector", ".cg-cluster")[1].click()
        choose(driver, "sort", "score")
        link, before = driver.current_url, rows(driver)
        driver.get("about:blank")
        driver.get(link)
        WebDriverWait(driver, 10).until(lambda d: d.find_element("css selector", "main").get_attribute("data-ready-ms"))
        assert rows(driver) == before and driver.current_url == link
        values = driver.execute_script("return Array.from(document.querySelectorAll('select')).map(s => s.value)")
        assert values == ["rollout", "0", "", "", "", "score", "-1"]
        assert "cg-chosen" in driver.find_elements("css selector", ".cg-cluster")[1].get_attribute("class").split()
        screenshot(driver, tmp_path, "explore_restored.png")
        # no error, and nothing but the folder's own files read
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        read = requested(driver)
        assert {exp.as_uri() + "/explore-data/maps-00000.js", exp.as_uri() + "/thumbs/00001.jpg"} <= set(read)
        assert all(name.startswith(exp.as_uri() + "/") for name in read), read
    finally:
        driver.quit()


def test_a_page_without_its_data_says_so(exp, tmp_path):
    alone = tmp_path / "alone.html"
    alone.write_text((exp / "explore.html").read_text(encoding="utf-8"), encoding="utf-8")
    driver = chromium()
    try:
        driver.get(alone.as_uri())
        status = driver.find_element("css selector", "[role=status]")
        assert status.text == "explore-data/index.js did not load: keep explore.html beside its explore-data folder."
    finally:
        driver.quit()


def test_a_shortcut_with_no_place_gets_its_repair_command(job, tmp_path, monkeypatch):
    # the 12 sample scenes, one class: every feature cluster taken as flagged (no other class
    # to confirm one by); the section lists them by number and rank, and under the table the
    # repair of each, with the layer its features were read at
    from selenium.webdriver.support.ui import WebDriverWait

    from captum_gmar import load_reference_model
    from captum_gmar.exploration.features import FeatureCluster

    monkeypatch.setattr(FeatureCluster, "flagged", property(lambda cluster: True))
    out = tmp_path / "exp"
    images = job.parent / "scenes"
    explore(job, out, images=images, model=load_reference_model(), feature_layer=3, neighbours=3, max_clusters=3, progress=False)
    clusters = json.loads((out / "strategies.json").read_text())["features"]["groups"][0]["clusters"]
    # one class, so no proxy was put on: the first cluster is given both proxies' figures
    # in the page's data, one screened and one against its null, as a model with other classes would give them
    index_file = out / "explore-data" / "index.js"
    prefix = "window.EXPLORE_INDEX = "
    index = json.loads(index_file.read_text().removeprefix(prefix).rstrip().rstrip(";"))
    first = index["features"]["groups"][0]["clusters"][0]
    first["tone curve"] = {"rise": 0.123, "random": None, "random_spread": None, "needed": 0.2, "screened": True}
    first["filter"] = {"rise": 0.512, "random": 0.01, "random_spread": 0.02, "needed": 0.2, "screened": False}
    index_file.write_text(f"{prefix}{json.dumps(index)};\n")
    driver = chromium("1300,1300")
    try:
        driver.get((out / "explore.html").as_uri())
        WebDriverWait(driver, 10).until(lambda d: d.find_element("css selector", "main").get_attribute("data-ready-ms"))
        table = [
            [td.text for td in tr.find_elements("css selector", "td")]
            for tr in driver.find_elements("css selector", "[id$='-features'] tbody tr")
        ]
        assert [row[1] for row in table] == [f"{c['cluster']} ({['1st', '2nd', '3rd'][c['rank'] - 1]})" for c in clusters]
        # one class: no image of another to put a cluster on, in the features or in pixels
        assert all(len(row) == 8 and row[4] == "– (no other class)" for row in table)
        assert all(row[5] == "–" for row in table[1:]) and table[0][5] == (
            "tone curve +0.123 (below 0.2: null not drawn); filter +0.512 (random images of the class: +0.010 ± 0.020; 0.20 needed beyond)"
        )
        commands = [code.text for code in driver.find_elements("css selector", "[id$='-features-next'] code")]
        assert len(commands) == len(clusters)
        for command, cluster in zip(commands, clusters, strict=True):  # the model as explore was given it: here, an object's folder
            assert re.fullmatch(
                rf"captum-gmar repair {job} --model \S+ --cluster features:0:{cluster['rank']} --feature-layer 3 --images {images} "
                "--data TRAIN --out repaired",
                command,
            )
        said = driver.find_element("css selector", "[id$='-features-next']").text
        assert "labelled images of every class (TRAIN: one folder per class)" in said
        assert (
            "by their tone curve, their filter or their mean difference from the rest of the class, one drawn per image of those the model follows, else by a texture drawn afresh"
            in said
        )
        screenshot(driver, tmp_path, "explore_features.png")
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
