// Router and health (admin keys): each service's mode with a switch, its circuit, every dependency's
// readiness, and the broker's queue depth.
import { call } from "./api.js";
import { h } from "./dom.js";
import { describeError } from "./words.js";

const MODES = ["mock", "hybrid", "real"];
const SERVICES = ["llamaparse", "openai"];

function serviceCard(check, refresh) {
  const info = check.info || {};
  const select = h("select", { id: `mode-${check.name}` }, MODES.map((m) => h("option", { value: m, selected: m === info.mode }, m)));
  const note = h("p.note", { role: "status" });
  const form = h("form.mode", {},
    h("div.field", {}, h("label", { for: `mode-${check.name}`, text: `Mode of ${check.name}` }), select),
    h("button", { type: "submit" }, "Switch"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("PUT", "/v1/router", { service: check.name, mode: select.value });
      await refresh(`${check.name} is now in ${select.value} mode.`);
    } catch (err) {
      note.textContent = describeError(err);
    }
  });
  return h("section.card.service", { "data-service": check.name },
    h("h3", {}, check.name, " ", h("span.badge", { "data-ok": String(check.ok), text: check.ok ? "ready" : "not ready" })),
    h("dl.facts", {},
      h("dt", { text: "Mode" }), h("dd.mode-now", { text: info.mode ?? "?" }),
      h("dt", { text: "Circuit" }), h("dd", {}, h("span.badge", { "data-circuit": info.circuit, text: info.circuit ?? "?" })),
      h("dt", { text: "Key" }), h("dd", { text: info.key_present ? "set" : "not set" }),
      h("dt", { text: "Budget left today" }), h("dd", { text: info.budget_left_usd ? `$${info.budget_left_usd}` : "no limit" })),
    form, note);
}

export async function routerPage(root) {
  const announce = h("p.note", { role: "status" });
  const body = h("div");
  const refresh = async (message = "") => {
    const status = await call("GET", "/v1/status");
    const services = status.checks.filter((c) => SERVICES.includes(c.name));
    const deps = status.checks.filter((c) => !SERVICES.includes(c.name));
    const queues = Object.entries(status.queues);
    body.replaceChildren(
      h("div.grid", {}, services.map((c) => serviceCard(c, refresh))),
      h("section.card", {}, h("h3", { text: "Readiness" }),
        h("ul.checks", {}, deps.map((c) => h("li", { "data-ok": String(c.ok) },
          h("span.badge", { "data-ok": String(c.ok), text: c.ok ? "ok" : "not ok" }), " ",
          h("strong", { text: c.name }), ` ${c.detail}`)))),
      h("section.card", {}, h("h3", { text: "Queue depth" }),
        queues.length
          ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Queue" }), h("th", { scope: "col", text: "Messages waiting" }))),
            h("tbody", {}, queues.map(([q, n]) => h("tr", {}, h("td", { text: q }), h("td.num", { text: String(n) })))))
          : h("p.note", { text: "The broker does not report its depth here (RabbitMQ): see its own console." })),
    );
    announce.textContent = message;
  };
  root.append(h("section.card", {}, h("h2", { text: "Router & health" }),
    h("p.note", { text: "A mode switch is seen by every worker and API process at its next decision." }),
    announce), body);
  try {
    await refresh();
  } catch (err) {
    announce.textContent = describeError(err);
  }
}
