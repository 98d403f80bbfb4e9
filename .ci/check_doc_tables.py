"""No table of the built docs scrolls sideways in a 1,400 x 900 browser window:
``python .ci/check_doc_tables.py BUILD_DIR``.

Every HTML page under BUILD_DIR is opened in headless Chromium (Debian's chromium and
chromium-driver, through selenium). A table scrolls sideways when its scroller, the
``div.table-wrapper`` furo puts around it or else the table itself (docs/_static/wide-tables.css
makes either one scroll), is wider inside than it is shown: ``scrollWidth > clientWidth``.
Exits 1 listing each such table (page, section heading, caption or first header cells,
widths), 0 otherwise.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1400, 900

# Waits for MathJax (formulas in cells change their width), then measures every table.
MEASURE = """
const done = arguments[arguments.length - 1];
const ready = window.MathJax && MathJax.startup && MathJax.startup.promise ? MathJax.startup.promise : Promise.resolve();
ready.then(() => document.fonts.ready).then(() => {
  done({
    viewport: window.innerWidth,
    tables: [...document.querySelectorAll("table")].map((table) => {
      const scroller = table.closest("div.table-wrapper") || table;
      const caption = table.querySelector("caption");
      const headers = [...table.querySelectorAll("thead th, tr:first-child th")].slice(0, 3);
      const section = table.closest("section");
      const heading = section && section.querySelector(":scope > h1, :scope > h2, :scope > h3, :scope > h4");
      return {
        section: heading ? [...heading.childNodes].filter((node) => !node.classList || !node.classList.contains("headerlink")).map((node) => node.textContent).join("").trim() : "",
        name: caption ? caption.innerText.trim() : headers.map((cell) => cell.innerText.trim()).join(" | "),
        scroll: scroller.scrollWidth,
        client: scroller.clientWidth,
      };
    }),
  });
});
"""


def _driver(profile: str) -> Any:
    """Headless Chromium (a selenium ``webdriver.Chrome``) with a fresh profile folder."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        sys.exit(f"{__file__}: selenium is not installed: pip install -e '.[test]'")

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        sys.exit(f"{__file__}: no {'chromium' if not chromium else 'chromedriver'} on PATH: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(argument)
    options.binary_location = chromium
    return webdriver.Chrome(options=options, service=Service(chromedriver))


def main(build_dir: Path) -> int:
    """Print every table wider than its scroller; 1 if there is one, else 0."""
    pages = sorted(build_dir.rglob("*.html"))
    if not pages:
        sys.exit(f"{__file__}: no HTML page under {build_dir}: build the docs there first (sphinx-build -b html docs {build_dir})")
    scrolling, count = [], 0
    with tempfile.TemporaryDirectory() as profile:
        driver = _driver(profile)
        try:
            driver.set_script_timeout(30)
            for page in pages:
                driver.get(page.as_uri())
                measured = driver.execute_async_script(MEASURE)
                count += len(measured["tables"])
                for table in measured["tables"]:
                    if table["scroll"] > table["client"]:
                        name = page.relative_to(build_dir)
                        scrolling.append(
                            f"{name}, {table['section']!r}: {table['name']!r}: {table['scroll']} px wide in {table['client']} px"
                        )
        finally:
            driver.quit()
    viewport = measured["viewport"]
    if scrolling:
        print(f"{len(scrolling)} of {count} tables on {len(pages)} pages scroll sideways in a {viewport} px wide window:")
        print("\n".join(scrolling))
        return 1
    print(f"docs tables: none of {count} on {len(pages)} pages scrolls sideways in a {viewport} px wide window")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit(f"usage: python {sys.argv[0]} BUILD_DIR (the folder sphinx-build -b html wrote)")
    sys.exit(main(Path(sys.argv[1])))
