"""Check the built documentation site in headless Chromium (``nox -s docs_browser`` runs it).

Serves SITE_DIR on 127.0.0.1 (a free port), then with Chromium driven by Selenium:

* loads every page reachable from the home page (the whole navigation, and every page they link
  to) and fails on any SEVERE console message (JavaScript errors, failed loads);
* checks every internal link, image, stylesheet and script by its HTTP status, and every
  ``#fragment`` of an internal link against the ids of the target page;
* types ``PacConv2d`` into the search box and expects a result that mentions it;
* saves screenshots of the home, API and benchmarks pages.

Needs Debian's ``chromium`` and ``chromium-driver``
(``apt-get install -y chromium chromium-driver``) and ``pip install selenium``.

    python docs/scripts/browser_check.py site [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urlparse

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APT_HINT = "sudo apt-get update && sudo apt-get install -y chromium chromium-driver"
SEARCH_TERM = "PacConv2d"
SCREENSHOTS = {"home": "", "api": "api/pac_core/", "benchmarks": "benchmarks/"}
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1366,900",
]

_PAGE_REFS = """
const refs = [];
for (const a of document.querySelectorAll('a[href]')) refs.push(['a', a.href]);
for (const e of document.querySelectorAll('img[src], script[src]')) refs.push(['res', e.src]);
for (const l of document.querySelectorAll('link[href]')) {
  if (['stylesheet', 'icon', 'shortcut icon'].includes(l.rel)) refs.push(['res', l.href]);
}
const ids = Array.from(document.querySelectorAll('[id], a[name]')).map(e => e.id || e.name);
return [refs, ids];
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def start_browser(user_data: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={user_data}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def load(driver, url: str) -> None:
    driver.get(url)
    deadline = time.monotonic() + 20
    while driver.execute_script("return document.readyState") != "complete":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not finish loading")
        time.sleep(0.05)


def severe_console(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def is_page(url: str) -> bool:
    path = urlparse(url).path
    return path.endswith("/") or path.endswith(".html")


def crawl(driver, base: str, failures: list[str]) -> tuple[set[str], int]:
    """Visit every page reachable from ``base``; check links, resources and console."""
    load(driver, base)
    nav = driver.execute_script(
        "return Array.from(document.querySelectorAll('.md-nav--primary a.md-nav__link[href]'))"
        ".map(a => a.href)")
    driver.get_log("browser")  # drop this load's messages: the home page is visited again below
    queue = deque([base, *(urldefrag(u)[0] for u in nav)])
    seen_pages: set[str] = set()
    statuses: dict[str, int] = {}
    ids: dict[str, set[str]] = {}
    fragment_refs: list[tuple[str, str, str]] = []
    while queue:
        page = queue.popleft()
        if page in seen_pages:
            continue
        seen_pages.add(page)
        status = statuses.setdefault(page, http_status(page))
        if status != 200:
            failures.append(f"page {page}: HTTP {status}")
            continue
        load(driver, page)
        failures.extend(f"console on {page}: {m}" for m in severe_console(driver))
        refs, page_ids = driver.execute_script(_PAGE_REFS)
        ids[page] = set(page_ids)
        for kind, ref in refs:
            if not ref.startswith(base):
                continue  # external: not checked (no network here)
            target, fragment = urldefrag(ref)
            if target not in statuses:
                statuses[target] = http_status(target)
                if statuses[target] != 200:
                    failures.append(f"broken {'link' if kind == 'a' else 'resource'} on {page}: "
                                    f"{ref} (HTTP {statuses[target]})")
            if kind == "a" and statuses[target] == 200 and is_page(target):
                queue.append(target)
                if fragment:
                    fragment_refs.append((page, target, fragment))
    for page, target, fragment in fragment_refs:
        if target in ids and fragment not in ids[target]:
            failures.append(f"broken anchor on {page}: {target}#{fragment}")
    nav_pages = {urldefrag(u)[0] for u in nav}
    missing = nav_pages - seen_pages
    failures.extend(f"navigation page not visited: {u}" for u in sorted(missing))
    return seen_pages, len(statuses)


def check_search(driver, base: str, failures: list[str]) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    load(driver, base)
    box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
    if not box.is_displayed():  # narrow layouts hide the box behind the search icon
        driver.find_element(By.CSS_SELECTOR, "label[for='__search']").click()
    WebDriverWait(driver, 10).until(ec.element_to_be_clickable(box)).click()
    box.send_keys(SEARCH_TERM)
    try:
        WebDriverWait(driver, 20).until(lambda d: any(
            SEARCH_TERM.lower() in item.text.lower()
            for item in d.find_elements(By.CSS_SELECTOR, ".md-search-result__item")))
    except Exception:
        failures.append(f"search for {SEARCH_TERM!r} found nothing that mentions it")
        return "no result"
    finally:
        failures.extend(f"console during search: {m}" for m in severe_console(driver))
    items = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
    meta = driver.find_element(By.CSS_SELECTOR, ".md-search-result__meta").text
    return f"{len(items)} results shown ({meta})"


def take_screenshots(driver, base: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in SCREENSHOTS.items():
        load(driver, base + path)
        time.sleep(0.3)  # let fonts/images settle
        target = out / f"{name}.png"
        driver.save_screenshot(str(target))
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check the built site in headless Chromium.")
    parser.add_argument("site", type=Path, nargs="?", default=ROOT / "site")
    parser.add_argument("--screenshots", type=Path,
                        default=ROOT / "docs" / "_generated" / "screenshots")
    parser.add_argument("--preflight", action="store_true",
                        help="only check that Chromium and its driver are installed")
    args = parser.parse_args(argv)
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        print(f"browser_check: {', '.join(missing)} not found. Install Chromium and its driver:\n"
              f"    {APT_HINT}", file=sys.stderr)
        return 2
    if args.preflight:
        return 0
    if not (args.site / "index.html").is_file():
        print(f"browser_check: no built site in {args.site} (run mkdocs build first)",
              file=sys.stderr)
        return 2
    server, base = serve(args.site)
    user_data = tempfile.mkdtemp(prefix="pac-docs-chromium-")
    failures: list[str] = []
    driver = start_browser(user_data)
    try:
        pages, urls = crawl(driver, base, failures)
        search = check_search(driver, base, failures)
        shots = take_screenshots(driver, base, args.screenshots)
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(user_data, ignore_errors=True)
    print(f"browser_check: {len(pages)} pages loaded, {urls} internal URLs checked, "
          f"search {SEARCH_TERM!r}: {search}")
    print("browser_check: screenshots " + ", ".join(str(p) for p in shots))
    if failures:
        print(f"browser_check: {len(failures)} problem(s):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print("browser_check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
