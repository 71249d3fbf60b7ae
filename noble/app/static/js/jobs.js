// Jobs view: every datagen / train / fit job with its progress; cancel, download, open a fit's result;
// submit a datagen job (JSON config) or a train job on a finished dataset.
import { api, saveBlob, showError } from "./api.js";
import { esc } from "./population.js";

const EXAMPLE_DATAGEN = {
  kind: "datagen",
  config: {
    name: "tiny-lif", family: "lif", n_models: 4, models_per_shard: 2, seed: 0,
    protocol: [{ kind: "step", amplitude_pA: 300.0, start_ms: 20.0, duration_ms: 100.0 }],
    duration_ms: 150.0, dt_ms: 0.1, record_dt_ms: 0.1, rheobase_duration_ms: 100.0, brian_target: "numpy",
  },
};

export class JobsView {
  constructor(root, openFit) {
    this.root = root;
    this.openFit = openFit;
    this.timer = null;
    this.visible = false;
    const q = (id) => root.querySelector(`#${id}`);
    this.el = {
      table: q("jobs-table"), error: q("jobs-error"), datagen: q("jobs-datagen"), datagenSubmit: q("jobs-datagen-submit"),
      datagenError: q("jobs-datagen-error"), trainDataset: q("jobs-train-dataset"), trainEpochs: q("jobs-train-epochs"),
      trainSubmit: q("jobs-train-submit"), trainError: q("jobs-train-error"), refresh: q("jobs-refresh"),
    };
    this.el.datagen.value = JSON.stringify(EXAMPLE_DATAGEN, null, 1);
    this.el.datagenSubmit.addEventListener("click", () => this.submitDatagen());
    this.el.trainSubmit.addEventListener("click", () => this.submitTrain());
    this.el.refresh.addEventListener("click", () => this.refresh());
  }

  show(visible) {
    this.visible = visible;
    clearTimeout(this.timer);
    if (visible) this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    let list;
    try {
      list = await api.jobs();
      showError(this.el.error, null);
    } catch (err) {
      showError(this.el.error, err);
      return;
    }
    this.render(list.items);
    const active = list.items.some((j) => j.state === "queued" || j.state === "running");
    if (this.visible) this.timer = setTimeout(() => this.refresh(), active ? 1000 : 5000);
  }

  render(items) {
    const tbody = this.el.table.querySelector("tbody");
    tbody.textContent = "";
    const datasets = [];
    for (const j of items) {
      if (j.kind === "datagen" && j.state === "succeeded") datasets.push(j);
      const tr = document.createElement("tr");
      tr.dataset.jobId = j.id;
      tr.innerHTML = `<td><code>${j.id.slice(0, 8)}</code></td><td>${esc(j.kind)}</td>
        <td class="state-${esc(j.state)}">${esc(j.state)}</td>
        <td><progress max="${Math.max(1, j.progress.total)}" value="${j.progress.done}"
          aria-label="progress of job ${j.id.slice(0, 8)}"></progress> ${Math.round(100 * j.progress.fraction)} %</td>
        <td>${esc(j.message || (j.errors || []).join(" ") || "")}</td>
        <td>${new Date(j.created_at).toLocaleString()}</td><td class="actions"></td>`;
      const actions = tr.querySelector(".actions");
      const button = (label, fn) => {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = label;
        b.addEventListener("click", async () => {
          try {
            await fn();
            showError(this.el.error, null);
          } catch (err) {
            showError(this.el.error, err);
          }
          this.refresh();
        });
        actions.appendChild(b);
      };
      if (j.state === "queued" || j.state === "running") button("cancel", () => api.cancelJob(j.id));
      if (j.state === "succeeded") {
        button("download", async () => saveBlob(await api.jobArchive(j.id), `${j.kind}-${j.id.slice(0, 8)}.zip`));
        if (j.kind === "fit") button("open", async () => this.openFit(j.id));
      }
      tbody.appendChild(tr);
    }
    const sel = this.el.trainDataset;
    const keep = sel.value;
    sel.textContent = "";
    for (const d of datasets) {
      const opt = document.createElement("option");
      opt.value = d.id;
      opt.textContent = `${d.id.slice(0, 8)} ${(d.spec.config && d.spec.config.name) || ""}`;
      sel.appendChild(opt);
    }
    if (keep) sel.value = keep;
    this.root.dataset.jobs = String(items.length);
  }

  async submitDatagen() {
    showError(this.el.datagenError, null);
    let body;
    try {
      body = JSON.parse(this.el.datagen.value);
    } catch (err) {
      showError(this.el.datagenError, new Error(`not JSON: ${err.message}`));
      return;
    }
    try {
      await api.submitJob(body);
      this.refresh();
    } catch (err) {
      showError(this.el.datagenError, err);
    }
  }

  async submitTrain() {
    showError(this.el.trainError, null);
    if (!this.el.trainDataset.value) {
      showError(this.el.trainError, new Error("no finished datagen job to train on yet"));
      return;
    }
    const options = {};
    if (this.el.trainEpochs.value !== "") options.epochs = Number(this.el.trainEpochs.value);
    try {
      await api.submitJob({ kind: "train", dataset_job_id: this.el.trainDataset.value, options });
      this.refresh();
    } catch (err) {
      showError(this.el.trainError, err);
    }
  }
}
