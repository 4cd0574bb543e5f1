"""Drives the explorer page in headless Chromium (Debian's /usr/bin/chromium,
through Playwright) and reports what a user would see, as JSON on stdout.

    explorer_pages.py CONFIG.json

CONFIG: {"base": "http://127.0.0.1:PORT/", "shots": DIR,
         "pages": [{"name": ..., "hash": "provider/ID"}, ...],
         "searches": [{"name": ..., "query": ...}, ...],
         "live_timeout": SECONDS or null}

Each page is opened fresh (as a pasted link) and reported once it says it is
ready: the `data-field` values (shown text and exact value), the points of each
chart, the rows of each table, the proof strip, any error shown, the time to
the first render, and a full-page screenshot in DIR. Every console error or
warning, uncaught exception, failed request and request to another origin is
a "problem". Each search types the query into the box and reports where it
lands. "live" keeps the overview open until it redraws with a newer slot
without reloading.
"""
import json
import sys
import time
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

COLLECT = """() => {
  const fields = {};
  for (const el of document.querySelectorAll('[data-field]'))
    fields[el.dataset.field] = {exact: el.dataset.exact ?? null, text: el.textContent, title: el.title || null};
  const charts = {};
  for (const svg of document.querySelectorAll('svg[data-chart]'))
    charts[svg.dataset.chart] = [...svg.querySelectorAll('.pt')].map(p => ({epoch: Number(p.dataset.epoch), value: p.dataset.value}));
  const tables = {};
  for (const t of document.querySelectorAll('table[id]'))
    tables[t.id] = [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent.trim()));
  const strip = [...document.querySelectorAll('#proof-strip a')].map(a => ({epoch: Number(a.dataset.epoch), outcome: a.dataset.outcome}));
  const err = document.querySelector('#error, #no-match');
  return {page: document.body.dataset.page || null, hash: location.hash, h1: document.querySelector('h1')?.textContent || null,
          fields, charts, tables, strip, error: err ? err.textContent : null,
          links: [...document.querySelectorAll('main a[href^="#/"]')].length};
}"""


def main():
    config = json.load(open(sys.argv[1]))
    base = config["base"]
    origin = "{0.scheme}://{0.netloc}".format(urlparse(base))
    problems = []
    out = {"pages": {}, "searches": {}, "live": None, "problems": problems}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        context = browser.new_context(viewport={"width": 1360, "height": 900})

        def open_page(where):
            page = context.new_page()
            weight = {"requests": 0}

            def on_console(msg):
                if msg.type in ("error", "warning"):
                    problems.append(f"{where}: console {msg.type}: {msg.text}")

            def on_request(req):
                weight["requests"] += 1
                if not (req.url.startswith(origin) or req.url.startswith("data:")):
                    problems.append(f"{where}: request to another origin: {req.url}")

            def on_response(resp):
                if resp.status >= 400:
                    problems.append(f"{where}: HTTP {resp.status} for {resp.url}")

            page.on("console", on_console)
            page.on("pageerror", lambda e: problems.append(f"{where}: uncaught: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"{where}: request failed: {r.url} {r.failure}"))
            page.on("request", on_request)
            page.on("response", on_response)
            return page, weight

        def ready(page, after=0):
            page.wait_for_function(
                f"Number(document.body.dataset.ready || 0) > {after}", timeout=30_000
            )

        for spec in config.get("pages", []):
            page, weight = open_page(spec["name"])
            start = time.monotonic()
            page.goto(base + "#/" + spec["hash"])
            ready(page)
            ready_ms = (time.monotonic() - start) * 1000
            report = page.evaluate(COLLECT)
            report["ready_ms"] = round(ready_ms, 1)
            report["document_bytes"] = len(page.content().encode())
            # The page and everything it fetched (the API's JSON), decoded.
            report["transferred_bytes"] = page.evaluate(
                "() => performance.getEntriesByType('navigation')[0].decodedBodySize"
                " + performance.getEntriesByType('resource').reduce((s, r) => s + r.decodedBodySize, 0)"
            )
            report["requests"] = weight["requests"]
            page.screenshot(path=f"{config['shots']}/{spec['name']}.png", full_page=True)
            out["pages"][spec["name"]] = report
            page.close()

        for spec in config.get("searches", []):
            page, _ = open_page("search " + spec["name"])
            page.goto(base + "#/")
            ready(page)
            before = int(page.evaluate("document.body.dataset.ready"))
            page.fill("#q", spec["query"])
            page.press("#q", "Enter")
            # The search page renders, then (one match) goes on to the entity.
            page.wait_for_function(
                "() => { const h = location.hash; const r = Number(document.body.dataset.ready || 0);"
                f" return r > {before} && (!h.startsWith('#/search/') || document.querySelector('#no-match, #matches, #error')); }}",
                timeout=30_000,
            )
            report = page.evaluate(COLLECT)
            page.screenshot(path=f"{config['shots']}/search-{spec['name']}.png", full_page=True)
            out["searches"][spec["name"]] = report
            page.close()

        if config.get("live_timeout"):
            page, _ = open_page("live overview")
            page.goto(base + "#/")
            ready(page)
            page.evaluate("window.__notReloaded = true")
            first = page.evaluate(COLLECT)
            deadline = time.monotonic() + config["live_timeout"]
            refreshed = False
            while time.monotonic() < deadline:
                if int(page.evaluate("Number(document.body.dataset.refreshes || 0)")) > 0:
                    refreshed = True
                    break
                time.sleep(0.5)
            page.wait_for_timeout(300)
            later = page.evaluate(COLLECT)
            series = page.evaluate("fetch('/v1/series').then(r => r.json())")
            out["live"] = {
                "refreshed": refreshed,
                "same_document": bool(page.evaluate("window.__notReloaded === true")),
                "first": first,
                "later": later,
                "series_points": len(series["points"]),
            }
            page.screenshot(path=f"{config['shots']}/live-overview.png", full_page=True)
            page.close()
        browser.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
