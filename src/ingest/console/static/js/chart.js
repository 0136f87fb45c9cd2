// A bar chart in plain SVG: per day, the real spend and the shadow cost of mock work side by side.
import { svg } from "./dom.js";

const W = 720;
const H = 220;
const PAD = { left: 64, right: 8, top: 12, bottom: 40 };

const sum = (amounts) => Object.values(amounts).reduce((a, b) => a + Number(b), 0);

/** days: [{date, spent_usd: {service: "0.1"}, simulated_usd: {...}}], oldest first. */
export function costChart(days) {
  const real = days.map((d) => sum(d.spent_usd));
  const shadow = days.map((d) => sum(d.simulated_usd));
  const top = Math.max(...real, ...shadow, 0) || 1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / days.length;
  const bar = Math.max(1, slot / 2 - 1);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const parts = [
    svg("line", { x1: PAD.left, y1: y(0), x2: W - PAD.right, y2: y(0), class: "axis" }),
    svg("line", { x1: PAD.left, y1: y(top), x2: W - PAD.right, y2: y(top), class: "grid" }),
    svg("text", { x: PAD.left - 4, y: y(top) + 4, "text-anchor": "end", class: "label" }, `$${top.toPrecision(3)}`),
    svg("text", { x: PAD.left - 4, y: y(0) + 4, "text-anchor": "end", class: "label" }, "$0"),
  ];
  days.forEach((d, i) => {
    const x = PAD.left + i * slot;
    const title = `${d.date}: spent $${real[i].toFixed(6)}, shadow $${shadow[i].toFixed(6)}`;
    parts.push(svg("g", {}, svg("title", {}, title),
      svg("rect", { x: x + 1, y: y(real[i]), width: bar, height: y(0) - y(real[i]), class: "real" }),
      svg("rect", { x: x + 1 + bar, y: y(shadow[i]), width: bar, height: y(0) - y(shadow[i]), class: "shadow" })));
    if ((days.length - 1 - i) % 7 === 0) {
      parts.push(svg("text", { x: x + slot / 2, y: H - PAD.bottom + 16, "text-anchor": "middle", class: "label" },
        d.date.slice(5)));
    }
  });
  parts.push(
    svg("rect", { x: PAD.left, y: H - 14, width: 10, height: 10, class: "real" }),
    svg("text", { x: PAD.left + 14, y: H - 5, class: "label" }, "real spend"),
    svg("rect", { x: PAD.left + 110, y: H - 14, width: 10, height: 10, class: "shadow" }),
    svg("text", { x: PAD.left + 124, y: H - 5, class: "label" }, "shadow cost of mock work"),
  );
  return svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
    "aria-label": `Cost per day, last ${days.length} days: real spend ${real.reduce((a, b) => a + b, 0).toFixed(6)} dollars, shadow cost ${shadow.reduce((a, b) => a + b, 0).toFixed(6)} dollars`,
  }, parts);
}
