// Upload: drop or pick many files; each gets its own row, live from its job's event stream.
import { followJob, upload } from "./api.js";
import { h } from "./dom.js";
import { bytes, describeError } from "./words.js";

const PARALLEL = 3;
const STAGES = {
  queued: "Queued", parse: "Parsing", chunk: "Chunking", embed: "Embedding", batch: "Waiting for batch", done: "Done",
};

function row(file) {
  const status = h("span.status", { text: "Waiting" });
  const bar = h("progress", { max: "1", value: "0", "aria-label": `Progress of ${file.name}` });
  const li = h("li.file", { "data-file": file.name },
    h("span.name", { text: file.name }), h("span.size", { text: bytes(file.size) }), bar, status);
  const set = (text, state, value) => {
    status.textContent = text;
    li.dataset.state = state;
    if (value !== undefined) bar.value = value;
  };
  return { li, set };
}

function describeJob(job) {
  if (job.status === "completed") return "Completed";
  if (job.status === "failed") return `Failed: ${job.error || "no reason given"}`;
  if (job.status === "deferred") return `Deferred: ${job.error || "waiting"}`;
  if (job.stage === "batch" && job.batch && job.batch.batch_id) {
    // The Batch API route (when_cheapest): done within the batch's 24 hour window.
    return `Waiting for batch ${job.batch.batch_id} (deadline ${job.batch.deadline || "unknown"})`;
  }
  const pct = job.stage === "embed" ? ` ${Math.round(job.progress * 100)}%` : "";
  return `${STAGES[job.stage] || job.stage}${pct}`;
}

async function send(file, ui) {
  ui.set("Uploading", "uploading");
  let accepted;
  try {
    accepted = await upload(file);
  } catch (err) {
    ui.set(describeError(err), "rejected", 0);
    return;
  }
  if (accepted.duplicate) ui.set("Already uploaded: following the first copy", "running");
  try {
    const last = await followJob(accepted.job_id, (job) => {
      const value = job.status === "completed" ? 1 : job.progress;
      ui.set(describeJob(job), job.status, value);
    });
    if (last && last.status === "completed" && accepted.duplicate) ui.set("Completed (already uploaded)", "completed", 1);
  } catch (err) {
    ui.set(describeError(err), "failed");
  }
}

async function sendAll(files, list) {
  const queue = files.map((file) => {
    const ui = row(file);
    list.append(ui.li);
    return () => send(file, ui);
  });
  const workers = Array.from({ length: Math.min(PARALLEL, queue.length) }, async () => {
    while (queue.length) await queue.shift()();
  });
  await Promise.all(workers);
}

export async function uploadPage(root) {
  const input = h("input.visually-hidden", { type: "file", multiple: true, id: "files" });
  const list = h("ul.files", { "aria-label": "Uploads" });
  const zone = h("div.drop", { id: "drop" },
    h("p", {}, "Drop files here, or "),
    h("label.button", { for: "files" }, "choose files"),
    input,
    h("p.hint", { text: "PDF, DOCX, ODT, HTML, Markdown or text. The type is read from the bytes." }));
  input.addEventListener("change", () => {
    sendAll([...input.files], list);
    input.value = "";
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    sendAll([...e.dataTransfer.files], list);
  });
  root.append(h("section.card", {}, h("h2", { text: "Upload" }), zone, list));
}
