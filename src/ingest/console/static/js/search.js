// Search: a query and top-k; hits with document, page, heading, score and the query's words marked.
import { call } from "./api.js";
import { h } from "./dom.js";
import { describeError, markTerms, pages } from "./words.js";

function where(hit) {
  const meta = hit.metadata || {};
  const path = hit.heading_path ?? meta.heading_path ?? [];
  return {
    page: pages(hit.page_start ?? meta.page_start ?? null, hit.page_end ?? meta.page_end ?? null),
    heading: path.length ? path.join(" › ") : null,
  };
}

function hitItem(hit, query) {
  const { page, heading } = where(hit);
  const text = h("p.text");
  for (const piece of markTerms(hit.text, query)) {
    text.append(piece.mark ? h("mark", { text: piece.text }) : document.createTextNode(piece.text));
  }
  return h("li.hit", {},
    h("div.where", {},
      h("a", { href: `#document/${hit.document_id}` }, hit.filename || hit.document_id),
      page ? h("span.page", { text: page }) : null,
      heading ? h("span.heading", { text: heading }) : null,
      h("span.score", { text: `score ${hit.score.toFixed(3)}` })),
    text);
}

export async function searchPage(root) {
  const query = h("input", { id: "query", type: "search", required: true, maxlength: "4000", placeholder: "What are you looking for?" });
  const topK = h("input", { id: "top-k", type: "number", min: "1", max: "100", value: "5" });
  const mode = h("select", { id: "search-mode" },
    ["hybrid", "vector", "keyword"].map((m) => h("option", { value: m }, m)));
  const results = h("ol.hits", { "aria-label": "Results" });
  const note = h("p.note", { role: "status" });
  const form = h("form.search", {},
    h("div.field.grow", {}, h("label", { for: "query", text: "Query" }), query),
    h("div.field", {}, h("label", { for: "top-k", text: "Top k" }), topK),
    h("div.field", {}, h("label", { for: "search-mode", text: "Mode" }), mode),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = query.value;
    note.textContent = "Searching…";
    results.replaceChildren();
    try {
      const body = { query: q, top_k: Number(topK.value) || 5, mode: mode.value };
      const answer = await call("POST", "/v1/search", body);
      note.textContent = `${answer.results.length} result${answer.results.length === 1 ? "" : "s"} (${mode.value})`;
      results.replaceChildren(...answer.results.map((hit) => hitItem(hit, q)));
    } catch (err) {
      note.textContent = describeError(err);
    }
  });
  root.append(h("section.card", {}, h("h2", { text: "Search" }), form, note, results));
  query.focus();
}
