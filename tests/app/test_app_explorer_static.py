"""The explorer's files as the app serves them: every asset the page loads exists, nothing comes from another
host (the page must work offline), and the whole page weighs at most 1 MB."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from noble.app.main import STATIC_DIR, create_app
from noble.config import Settings

PAGE_BUDGET_BYTES = 1_000_000


def _fetch_all(tmp_path: Path) -> dict[str, httpx.Response]:
    """GET / and, transitively, every script, stylesheet and ES module import it names."""
    app = create_app(Settings(data_dir=tmp_path, api_keys="k"))  # keys on: the page itself stays public

    async def main() -> dict[str, httpx.Response]:
        got: dict[str, httpx.Response] = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            todo = ["/"]
            while todo:
                url = todo.pop()
                if url in got:
                    continue
                r = await c.get(url)
                got[url] = r
                text = r.text if r.status_code == 200 and not url.endswith(".svg") else ""
                refs = re.findall(r'(?:src|href)="(/static/[^"]+)"', text)
                base = url.rsplit("/", 1)[0]
                refs += [f"{base}/{m[2:]}" for m in re.findall(r'from "(\./[^"]+)"', text)]
                todo.extend(refs)
        return got

    return asyncio.run(main())


def test_every_asset_loads_without_a_key_and_within_budget(tmp_path: Path) -> None:
    got = _fetch_all(tmp_path)
    bad = {u: r.status_code for u, r in got.items() if r.status_code != 200}
    assert not bad, bad
    assert got["/"].headers["content-type"].startswith("text/html")
    assert {"/static/js/main.js", "/static/js/population.js", "/static/js/fit.js", "/static/js/jobs.js",
            "/static/vendor/uplot/uPlot.iife.min.js"} <= set(got)
    total = sum(len(r.content) for r in got.values())
    assert total <= PAGE_BUDGET_BYTES, f"page weighs {total} bytes"


def test_no_resource_from_another_host(tmp_path: Path) -> None:
    """No CDN, no font service: the only URLs in the page's code are the API's own paths."""
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in {".html", ".js", ".css"} or "vendor" in path.parts:
            continue
        text = path.read_text()
        assert not re.search(r"""(?:src|href|url\(|fetch\(|from)\s*=?\s*["']?(?:https?:)?//""", text), path
    vendored = STATIC_DIR / "vendor" / "uplot"
    assert (vendored / "LICENSE").read_text().startswith("The MIT License")


def test_every_control_has_a_label(tmp_path: Path) -> None:
    html = (STATIC_DIR / "index.html").read_text()
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    assert ids and not [i for i in ids if i not in labelled], [i for i in ids if i not in labelled]


def test_fit_captions_label_every_physiology_check_as_the_png_does() -> None:
    """The fit view's per-sweep caption (fit.js PHYS_SHORT) and the overlay PNG (physiology.SHORT) name each check
    alike, and the caption has a label for every check fit.json can list (a new check once went unlabelled and
    out of order there)."""
    from noble.fit.physiology import SHORT, SWEEP_CHECKS

    js = (STATIC_DIR / "js" / "fit.js").read_text()
    block = re.search(r"const PHYS_SHORT = \{(.*?)\};", js, re.S)
    assert block is not None
    labels = dict(re.findall(r'(\w+): "([^"]*)"', block.group(1)))
    assert labels == {k: SHORT[k] for k in SWEEP_CHECKS}
