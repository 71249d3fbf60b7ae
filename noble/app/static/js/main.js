// The explorer's entry point: tabs, the API key prompt, and the three views.
import { api, apiKey, setApiKey, setUnauthorizedHandler, showError } from "./api.js";
import { FitView } from "./fit.js";
import { JobsView } from "./jobs.js";
import { PopulationView } from "./population.js";

// Timings the browser tests and benchmarks/explorer.py read (ms since navigation start / per redraw).
const metrics = { firstTraceMs: null, redrawMs: [], fiDrawn: 0 };
window.noble = { metrics };

const keyBox = document.getElementById("key-box");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");

function askForKey(message) {
  keyBox.hidden = false;
  showError(keyError, new Error(message || "This server needs an API key."));
  keyInput.focus();
}
setUnauthorizedHandler(askForKey);

const tabs = Array.from(document.querySelectorAll("[role=tab]"));
function selectTab(id) {
  for (const t of tabs) {
    const on = t.id === id;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
  }
  jobs.show(id === "tab-jobs");
}
tabs.forEach((t, i) => {
  t.addEventListener("click", () => selectTab(t.id));
  t.addEventListener("keydown", (ev) => { // arrow keys move between tabs (WAI-ARIA tabs pattern)
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const next = tabs[(i + (ev.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next.id);
    next.focus();
  });
});

const population = new PopulationView(document.getElementById("panel-population"), metrics);
const jobs = new JobsView(document.getElementById("panel-jobs"), (id) => {
  selectTab("tab-fit");
  fit.follow(id);
});
const fit = new FitView(document.getElementById("panel-fit"), () => jobs.visible && jobs.refresh());
window.noble.views = { population, fit, jobs };

async function start() {
  try {
    await population.load();
    keyBox.hidden = !apiKey();
    keyInput.placeholder = apiKey() ? "(a key is set)" : "";
  } catch (err) {
    if (err.status !== 401) showError(document.getElementById("pop-amp-error"), err);
  }
}

keyBox.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setApiKey(keyInput.value.trim());
  showError(keyError, null);
  start();
});

selectTab("tab-population");
start();
export { api };
