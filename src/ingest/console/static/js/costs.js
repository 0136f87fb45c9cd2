// Costs: today's spent, reserved and limit per service, the shadow cost, 30 days as a chart; an admin
// key may change the daily limits.
import { call, session } from "./api.js";
import { costChart } from "./chart.js";
import { h } from "./dom.js";
import { describeError, usd } from "./words.js";

function table(report) {
  const rows = Object.entries(report.services).map(([name, a]) => [name, a]);
  rows.push(["total", report.total]);
  return h("table.costs", {},
    h("caption", { text: `Budget day ${report.date} (${report.timezone})` }),
    h("thead", {}, h("tr", {}, ["Service", "Spent", "Reserved", "Limit", "Shadow cost (mock)"].map(
      (t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows.map(([name, a]) => h("tr", { "data-service": name },
      h("th", { scope: "row", text: name }),
      h("td.num", { text: usd(a.spent_usd) }),
      h("td.num", { text: usd(a.reserved_usd) }),
      h("td.num", { text: usd(a.limit_usd) }),
      h("td.num", { text: usd(a.simulated_usd) })))));
}

function budgetForm(onSet) {
  const service = h("select", { id: "budget-service" },
    h("option", { value: "" }, "all services together"),
    h("option", { value: "llamaparse" }, "llamaparse"),
    h("option", { value: "openai" }, "openai"));
  const amount = h("input", { id: "budget-amount", inputmode: "decimal", required: true, pattern: "[0-9]+(\\.[0-9]+)?", placeholder: "5.00" });
  const note = h("p.note", { role: "status" });
  const form = h("form.budget", {},
    h("div.field", {}, h("label", { for: "budget-service", text: "Service" }), service),
    h("div.field", {}, h("label", { for: "budget-amount", text: "Daily limit (US$)" }), amount),
    h("button", { type: "submit" }, "Set limit"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { limit_usd: amount.value.trim() };
    if (service.value) body.service = service.value;
    try {
      const report = await call("PUT", "/v1/costs/limits", body);
      note.textContent = `Daily limit for ${service.value || "all services"} is now $${amount.value.trim()}.`;
      onSet(report);
    } catch (err) {
      note.textContent = describeError(err);
    }
  });
  return h("section.card", {}, h("h3", { text: "Daily limits (admin)" }), form, note);
}

// What the batch route (`when_cheapest`) saved today against the embeddings endpoint's price.
function batchSaving(report) {
  const saved = report.batch_saved;
  if (!saved || !saved.chunks) return h("p.note.batch-saved", { text: "No chunks went through the Batch API today." });
  return h("p.note.batch-saved", {
    text: `Batch API: ${saved.chunks} chunks (${saved.tokens} tokens) at half price saved ${usd(saved.saved_usd)}`
      + ` (simulated ${usd(saved.simulated_usd)}).`,
  });
}

export async function costsPage(root) {
  const [report, history] = await Promise.all([call("GET", "/v1/costs"), call("GET", "/v1/costs/days?days=30")]);
  const today = h("div.scroll", {}, table(report), batchSaving(report));
  const scope = history.scope === "deployment" ? "the whole deployment" : "your documents";
  root.append(
    h("section.card", {}, h("h2", { text: "Costs today" }), today),
    h("section.card", {}, h("h2", { text: "Last 30 days" }),
      h("p.note", { text: `Charged per budget day, ${scope}. Hover a bar for its amounts.` }),
      costChart(history.days)),
  );
  if (session.admin) root.append(budgetForm((fresh) => today.replaceChildren(table(fresh), batchSaving(fresh))));
}
