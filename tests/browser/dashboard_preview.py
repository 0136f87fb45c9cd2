"""A page that lays out the Grafana dashboard's panels where Grafana would (their gridPos) and fills each
with the current value of every series its queries read, from one real /metrics scrape. It stands in for
a Grafana screenshot where no Grafana runs, and says so on the page: no rates, no history, no PromQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

ROW_PX = 34


def samples_by_name(scrapes: Iterable[str]) -> dict[str, list[Sample]]:
    found: dict[str, list[Sample]] = {}
    for text in scrapes:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append(sample)
    return found


def _value_rows(names: list[str], samples: dict[str, list[Sample]]) -> list[str]:
    rows = []
    for name in names:
        series = [s for s in samples.get(name, []) if "le" not in s.labels]
        if not series:
            rows.append(f"<tr><td>{html.escape(name)}</td><td class=none>no sample yet</td></tr>")
        for sample in series[:6]:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            rows.append(
                f"<tr><td>{html.escape(name)}<small>{html.escape(labels)}</small></td>"
                f"<td>{sample.value:.6g}</td></tr>"
            )
    return rows


def render(dashboard: dict[str, Any], samples: dict[str, list[Sample]]) -> str:
    panels = []
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        names: list[str] = []
        for target in panel["targets"]:
            for name in re.findall(r"\bingest_[a-z0-9_]+", target["expr"]):
                base = re.sub(r"_bucket$", "_count", name)  # a histogram's count stands for its buckets
                if base not in names:
                    names.append(base)
        place = f"grid-column: {pos['x'] + 1} / span {pos['w']}; grid-row: {pos['y'] + 1} / span {pos['h']}"
        rows = "".join(_value_rows(names, samples))
        panels.append(
            f'<section style="{place}"><h2>{html.escape(panel["title"])}</h2><table>{rows}</table></section>'
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font: 13px system-ui, sans-serif; background: #111217; color: #d8d9da; margin: 16px; }}
header {{ margin-bottom: 12px; }} header h1 {{ font-size: 18px; margin: 0; }}
header p {{ margin: 4px 0; color: #f2cc0c; }}
main {{ display: grid; grid-template-columns: repeat(24, 1fr); grid-auto-rows: {ROW_PX}px; gap: 8px; }}
section {{ background: #181b1f; border: 1px solid #2c3235; border-radius: 4px; padding: 8px;
  overflow: hidden; }}
h2 {{ font-size: 14px; margin: 0 0 6px; }}
table {{ width: 100%; border-collapse: collapse; }}
td {{ padding: 2px 4px; border-bottom: 1px solid #2c3235; }}
td:last-child {{ text-align: right; font-variant-numeric: tabular-nums; color: #73bf69; }}
small {{ display: block; color: #8e8e8e; }} .none {{ color: #8e8e8e !important; }}
</style></head><body><header><h1>{html.escape(dashboard["title"])}: layout preview (not Grafana)</h1>
<p>Each panel of docker/grafana/dashboards/ingest.json where Grafana puts it, with the current value of
every series its queries read, from one real scrape of ingest's /metrics. Grafana draws these as graphs
over time, with rates and quantiles.</p></header><main>{"".join(panels)}</main></body></html>"""
