// Documents: the user's documents with a status filter, delete and retry; one document with its chunks.
import { call } from "./api.js";
import { h } from "./dom.js";
import { describeError, pages, usd, when } from "./words.js";

const STATUSES = ["queued", "running", "completed", "failed", "deferred"];
const LIMIT = 500;

function costText(doc) {
  return doc.cost_usd !== "0.000000" || doc.simulated_cost_usd === "0.000000"
    ? usd(doc.cost_usd)
    : `${usd(doc.cost_usd)} (shadow ${usd(doc.simulated_cost_usd)})`;
}

async function retry(documentId) {
  const { job_id: jobId } = await call("GET", `/v1/documents/${documentId}/chunks?limit=1`);
  await call("POST", `/v1/jobs/${jobId}/retry`);
}

function actions(doc, refresh, message) {
  const del = h("button.danger", {
    type: "button",
    "aria-label": `Delete ${doc.filename}`,
    onclick: async () => {
      if (!window.confirm(`Delete ${doc.filename} with its chunks and vectors?`)) return;
      try {
        await call("DELETE", `/v1/documents/${doc.id}`);
        message(`Deleted ${doc.filename}.`);
        refresh();
      } catch (err) {
        message(describeError(err));
      }
    },
  }, "Delete");
  const again = doc.status === "failed" && h("button", {
    type: "button",
    "aria-label": `Retry ${doc.filename}`,
    onclick: async () => {
      try {
        await retry(doc.id);
        message(`${doc.filename} is queued again.`);
        refresh();
      } catch (err) {
        message(describeError(err));
      }
    },
  }, "Retry");
  return h("td.actions", {}, again, del);
}

export async function documentsPage(root) {
  const filter = h("select", { id: "status-filter" },
    h("option", { value: "" }, "all"), STATUSES.map((s) => h("option", { value: s }, s)));
  const note = h("p.note", { role: "status" });
  const body = h("tbody");
  const table = h("table.docs", {},
    h("caption.visually-hidden", { text: "Your documents, newest first" }),
    h("thead", {}, h("tr", {}, ["File", "Status", "Chunks", "Pages", "Cost", "Created", ""].map(
      (t) => h("th", { scope: "col", text: t })))),
    body);
  const section = h("section.card", {},
    h("div.row", {}, h("h2", { text: "Documents" }),
      h("div.field", {}, h("label", { for: "status-filter", text: "Status" }), filter)),
    note, h("div.scroll", {}, table));
  root.append(section);

  let docs = [];
  const draw = () => {
    const shown = docs.filter((d) => !filter.value || d.status === filter.value);
    body.replaceChildren(...shown.map((d) => h("tr", { "data-document": d.id },
      h("td.file", {}, h("a", { href: `#document/${d.id}` }, d.filename)),
      h("td", { "data-label": "Status" }, h("span.badge", { "data-status": d.status, text: d.status }),
        d.error ? h("div.error.small", { text: d.error }) : null),
      h("td.num", { "data-label": "Chunks", text: String(d.chunks) }),
      h("td.num", { "data-label": "Pages", text: d.pages === null ? "–" : String(d.pages) }),
      h("td.num", { "data-label": "Cost", text: costText(d) }),
      h("td", { "data-label": "Created", text: when(d.created_at) }),
      actions(d, refresh, (text) => { note.textContent = text; }))));
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: "7", text: "No documents." })));
  };
  const refresh = async () => {
    docs = (await call("GET", `/v1/documents?limit=${LIMIT}`)).documents;
    draw();
  };
  filter.addEventListener("change", draw);
  await refresh();
}

const CHUNKS_PER_PAGE = 50;

function chunkItem(c) {
  return h("li.chunk", {},
    h("div.where", {},
      h("span", { text: `#${c.ordinal}` }),
      c.page_start !== null ? h("span.page", { text: pages(c.page_start, c.page_end) }) : null,
      c.heading_path.length ? h("span.heading", { text: c.heading_path.join(" › ") }) : null),
    h("p.text", { text: c.text }));
}

export async function documentPage(root, id) {
  const base = `/v1/documents/${encodeURIComponent(id)}`;
  const doc = await call("GET", base);
  const facts = [
    ["Status", doc.status], ["Type", doc.media_type], ["Pages", doc.pages ?? "–"], ["Chunks", doc.chunks],
    ["Cost", usd(doc.cost_usd)], ["Shadow cost", usd(doc.simulated_cost_usd)], ["Created", when(doc.created_at)],
  ];
  if (doc.error) facts.push(["Error", doc.error]);
  const list = h("ol.chunks", { "aria-label": "Chunks" });
  const more = h("button", { type: "button" }, "Show more chunks");
  const loadMore = async () => {
    const { chunks } = await call("GET", `${base}/chunks?limit=${CHUNKS_PER_PAGE}&offset=${list.children.length}`);
    list.append(...chunks.map(chunkItem));
    more.hidden = list.children.length >= doc.chunks || chunks.length < CHUNKS_PER_PAGE;
  };
  more.addEventListener("click", loadMore);
  root.append(h("section.card", {},
    h("p", {}, h("a", { href: "#documents" }, "← Documents")),
    h("h2", { text: doc.filename }),
    h("dl.facts", {}, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])),
    h("h3", { text: `Chunks (${doc.chunks})` }),
    list, more));
  await loadMore();
}
