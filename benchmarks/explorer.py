"""Explorer benchmark: how fast the web page shows a population, in a real headless Chromium (Debian's) against
a real `noble serve` with the shipped default surrogate.

    python benchmarks/explorer.py                       # 5 cold loads, 20 slider steps, 16 neurons
    python benchmarks/explorer.py --loads 9 --steps 40 --json bench_explorer.json

Printed, medians over the runs: first render (navigation start to the first plotted trace, a fresh browser
profile each load, the server idle before each), the same for a warm reload, and slider change to redrawn
traces (one arrow-key step at a time, each after the previous redraw and the F-I curve have finished), beside
the /v1/sample request those redraws wait for (the browser's Resource Timing). Targets: first render <= 1 s,
slider p50 <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from api_load import Server  # `noble serve` in its own process group on a free port

CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1500,1100")


def browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait_js(driver: Any, js: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({js});")
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(js)


def load(driver: Any, url: str) -> float:
    """One page load; returns ms from navigation start to the first plotted trace (after the F-I settles)."""
    driver.get(url + "/")
    first = float(wait_js(driver, "window.noble && window.noble.metrics.firstTraceMs"))
    wait_js(driver, "window.noble.metrics.fiDrawn > 0")  # the server is idle again before the next load
    return first


def sample_request_ms(driver: Any) -> list[float]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/v1/sample'))"
        ".map(e => e.responseEnd - e.startTime)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="NOBLE_TORCH_THREADS of the server")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from selenium.webdriver.common.keys import Keys

    from noble.operator import default_surrogate_path

    work = Path(tempfile.mkdtemp(prefix="noble-bench-explorer-"))
    with Server(Path(default_surrogate_path()), True, work, args.threads) as srv:
        cold, warm = [], []
        for k in range(args.loads):
            d = browser(work / f"profile-{k}")
            try:
                cold.append(load(d, srv.url))
                warm.append(load(d, srv.url))
            finally:
                d.quit()
        d = browser(work / "profile-slider")
        try:
            load(d, srv.url)
            slider = d.find_element("id", "pop-amp")
            room = int((float(slider.get_attribute("max")) - float(slider.get_attribute("value")))
                       / float(slider.get_attribute("step")))
            d.execute_script("performance.clearResourceTimings(); window.noble.metrics.redrawMs = [];")
            for i in range(min(args.steps, room)):  # upwards from the default, inside the trained range
                slider.send_keys(Keys.ARROW_RIGHT)
                wait_js(d, f"window.noble.metrics.redrawMs.length >= {i + 1}")
            redraw = [float(x) for x in d.execute_script("return window.noble.metrics.redrawMs")]
            requests = [float(x) for x in sample_request_ms(d)]
            n = int(d.execute_script("return window.noble.views.population.traces.nNeurons"))
        finally:
            d.quit()

    def q(xs: list[float], p: float) -> float:
        s = sorted(xs)
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    rows = [
        ("first render, fresh profile", cold, 1000.0),
        ("first render, warm reload", warm, 1000.0),
        (f"slider step -> redrawn traces ({n} neurons)", redraw, 300.0),
        ("  of which the /v1/sample request", requests, None),
    ]
    print(f"explorer benchmark: {platform.node()}, {platform.processor() or platform.machine()}, "
          f"server torch threads {args.threads}")
    print(f"{'measure':46s} {'n':>3s} {'p50 ms':>8s} {'p90 ms':>8s} {'target':>8s}")
    for name, xs, target in rows:
        print(f"{name:46s} {len(xs):3d} {statistics.median(xs):8.0f} {q(xs, 0.9):8.0f} "
              f"{'<= %d' % target if target else '':>8s}")
    if args.json:
        args.json.write_text(json.dumps({"cold_ms": cold, "warm_ms": warm, "redraw_ms": redraw,
                                         "sample_request_ms": requests, "neurons": n}, indent=1))


if __name__ == "__main__":
    main()
