/** Charts with uPlot, filled from the API; a route this server does not have says so. */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { ApiFailure, call } from "./api";
import {
  accuracyColumns,
  accuracyMetrics,
  driftColumns,
  driftRows,
  healthColumns,
  histogram,
  timeRange,
  type AccuracyAnswer,
  type Bins,
  type DriftFeature,
} from "./series";

const INK = "#1d232b";
const BLUE = "#1f5fbf";
const ORANGE = "#a84f00";
const PALETTE = [BLUE, ORANGE, "#17803d", "#7a3db8", "#b3262d"];

function width(el: HTMLElement): number {
  return Math.max(260, Math.min(el.clientWidth || 600, 1100));
}

function say(el: HTMLElement, text: string, cls = "muted"): void {
  el.replaceChildren();
  const p = document.createElement("p");
  p.className = cls;
  p.textContent = text;
  el.append(p);
}

function hours(el: HTMLElement): number {
  const select = el.closest(".panel")?.querySelector<HTMLSelectElement>("[data-range]");
  return Number(select?.value ?? 24);
}

async function fetchOrSay(el: HTMLElement, url: string): Promise<unknown | undefined> {
  try {
    return await call("GET", url);
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 404 && !el.dataset.url?.includes("service-health")) {
      say(el, "Not available on this server: this service has no such route yet.");
    } else {
      say(el, error instanceof Error ? error.message : String(error), "error");
    }
    return undefined;
  }
}

function bars(): uPlot.Series.PathBuilder | undefined {
  return uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 60] }) : undefined;
}

async function serviceHealth(el: HTMLElement): Promise<void> {
  const range = timeRange(hours(el), new Date());
  const url = `${el.dataset.url}?since=${encodeURIComponent(range.since)}&resolution=${range.resolution}`;
  const answer = (await fetchOrSay(el, url)) as { periods?: [] } | undefined;
  if (!answer) return;
  const data = healthColumns(answer);
  if (!data[1].some((v) => (v ?? 0) > 0)) {
    say(el, "No predictions in this time range yet: monitoring data appears here once the deployment is used.");
    el.dataset.points = "0";
    return;
  }
  el.replaceChildren();
  el.dataset.points = String(data[1].filter((v) => (v ?? 0) > 0).length);
  new uPlot(
    {
      width: width(el),
      height: 240,
      series: [
        {},
        { label: "requests", stroke: BLUE, fill: "rgba(31,95,191,0.15)", paths: bars() },
        { label: "p95 response ms", stroke: ORANGE, width: 2, scale: "ms", spanGaps: true },
      ],
      axes: [{ stroke: INK }, { stroke: INK, label: "requests" }, { side: 1, scale: "ms", stroke: INK, label: "ms", grid: { show: false } }],
    },
    data as uPlot.AlignedData,
    el,
  );
}

async function drift(el: HTMLElement): Promise<void> {
  const range = timeRange(hours(el), new Date());
  const answer = (await fetchOrSay(el, `${el.dataset.url}?since=${encodeURIComponent(range.since)}`)) as
    | { status?: string; features?: DriftFeature[] }
    | undefined;
  if (!answer) return;
  const rows = driftRows(answer);
  el.replaceChildren();
  const head = document.createElement("p");
  head.innerHTML = `Overall: <span class="status status-${cssWord(answer.status)}"></span>`;
  (head.querySelector("span") as HTMLElement).textContent = answer.status ?? "unknown";
  el.append(head);
  if (!rows.length) {
    say(el, "No drift figures yet: they appear once predictions have been scored.");
    return;
  }
  const plot = document.createElement("div");
  el.append(plot);
  new uPlot(
    {
      width: width(el),
      height: 220,
      scales: { x: { time: false, range: [-0.5, rows.length - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(max, 0) * 1.1 || 1] } },
      series: [{ label: "feature", value: (_u, v) => rows[v]?.name ?? "" }, { label: rows[0].metric ?? "drift", stroke: BLUE, fill: "rgba(31,95,191,0.3)", paths: bars() }],
      axes: [{ stroke: INK, values: (_u, ticks) => ticks.map((t) => rows[t]?.name ?? "") }, { stroke: INK }],
    },
    driftColumns(rows) as uPlot.AlignedData,
    plot,
  );
  el.append(table(["Feature", "Metric", "Value", "Warning at", "At risk at", "Rows", "Status", "Importance"],
    rows.map((r) => [r.name, r.metric ?? "", fmt(r.value), fmt(r.threshold_warning), fmt(r.threshold_at_risk), String(r.rows ?? ""), r.status ?? "", fmt(r.importance)])));
}

async function accuracy(el: HTMLElement): Promise<void> {
  const range = timeRange(hours(el), new Date());
  const answer = (await fetchOrSay(el, `${el.dataset.url}?since=${encodeURIComponent(range.since)}`)) as AccuracyAnswer | undefined;
  if (!answer) return;
  el.replaceChildren();
  const metrics = accuracyMetrics(answer);
  const summary = Object.entries(answer.metrics ?? {}).map(([k, v]) => [k, typeof v === "number" ? fmt(v) : String(v)]);
  if (summary.length) el.append(table(["Metric", "Value"], summary));
  if (!metrics.length) {
    say(el, "No accuracy yet: upload actuals (the ids and true values of scored rows) to see it.");
    return;
  }
  const plot = document.createElement("div");
  el.prepend(plot);
  new uPlot(
    {
      width: width(el),
      height: 240,
      series: [{}, ...metrics.map((m, i) => ({ label: m, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true }))],
      axes: [{ stroke: INK }, { stroke: INK }],
    },
    accuracyColumns(answer, metrics) as uPlot.AlignedData,
    plot,
  );
}

function histogramChart(el: HTMLElement): void {
  const bins = JSON.parse(el.dataset.bins ?? "{}") as Bins;
  const { labels, counts } = histogram(bins);
  el.replaceChildren();
  new uPlot(
    {
      width: Math.min(width(el), 360),
      height: 140,
      legend: { show: false },
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: [0, Math.max(1, ...counts) * 1.1] } },
      series: [{}, { label: "baseline rows", stroke: BLUE, fill: "rgba(31,95,191,0.35)", paths: bars() }],
      axes: [{ stroke: INK, values: (_u, ticks) => ticks.map((t) => labels[t] ?? ""), size: 40 }, { stroke: INK, size: 45 }],
    },
    [labels.map((_, i) => i), counts] as uPlot.AlignedData,
    el,
  );
}

export async function alerts(el: HTMLElement): Promise<void> {
  const url = el.dataset.alerts as string;
  let answer: unknown;
  try {
    answer = await call("GET", url);
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 404) say(el, "Alerts are not available on this server.");
    else say(el, error instanceof Error ? error.message : String(error), "error");
    return;
  }
  let list = (Array.isArray(answer) ? answer : []) as Record<string, string | null>[];
  if (el.dataset.openOnly) list = list.filter((a) => !a.cleared_at);
  if (!list.length) {
    say(el, el.dataset.openOnly ? "No open alerts." : "No alerts for this deployment.");
    return;
  }
  el.replaceChildren(table(["Rule", "State", "Opened", "Cleared", "Message"],
    list.map((a) => [a.rule ?? "", a.state ?? "", a.opened_at ?? "", a.cleared_at ?? "", a.message ?? ""])));
}

function table(head: string[], rows: string[][]): HTMLElement {
  const wrap = document.createElement("div");
  wrap.className = "scroll";
  const t = document.createElement("table");
  const tr = t.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    tr.append(th);
  }
  const body = t.createTBody();
  for (const row of rows) {
    const r = body.insertRow();
    for (const cell of row) r.insertCell().textContent = cell;
  }
  wrap.append(t);
  return wrap;
}

function fmt(v: number | null | undefined): string {
  return v === null || v === undefined ? "" : Number(v.toPrecision(4)).toString();
}

function cssWord(v: string | undefined): string {
  return (v ?? "unknown").replace(/[^a-z_]/gi, "");
}

const KINDS: Record<string, (el: HTMLElement) => Promise<void> | void> = {
  "service-health": serviceHealth,
  drift,
  accuracy,
  histogram: histogramChart,
};

export async function draw(root: ParentNode): Promise<void> {
  const jobs: (Promise<void> | void)[] = [];
  for (const el of root.querySelectorAll<HTMLElement>("[data-chart]")) {
    const kind = KINDS[el.dataset.chart ?? ""];
    if (kind) jobs.push(kind(el));
  }
  for (const el of root.querySelectorAll<HTMLElement>("[data-alerts]")) jobs.push(alerts(el));
  await Promise.all(jobs);
}
