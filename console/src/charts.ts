/** Charts with uPlot, filled from the API; a route this server does not have says so. */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { ApiFailure, call } from "./api";
import {
  accuracyColumns,
  accuracyMetrics,
  driftRows,
  driftSeriesColumns,
  healthColumns,
  histogram,
  shownAlerts,
  statusWord,
  timeRange,
  type AccuracyAnswer,
  type Bins,
  type DriftAnswer,
} from "./series";
import { relativeTime } from "./format";

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

/** How many of the most important features the drift-over-time chart draws. */
const DRIFT_LINES = 5;

async function drift(el: HTMLElement): Promise<void> {
  const range = timeRange(hours(el), new Date());
  const since = `since=${encodeURIComponent(range.since)}`;
  const answer = (await fetchOrSay(el, `${el.dataset.url}?${since}`)) as DriftAnswer | undefined;
  if (!answer) return;
  const rows = driftRows(answer);
  el.replaceChildren();
  const head = document.createElement("p");
  head.innerHTML = `Overall: <span class="status"></span>`;
  const word = head.querySelector("span") as HTMLElement;
  word.classList.add(`status-${cssWord(answer.status)}`);
  word.textContent = statusWord(answer.status);
  head.append(` (${answer.metric ?? "drift"} over ${answer.rows ?? 0} rows${answer.reason ? `; ${answer.reason}` : ""})`);
  el.append(head);
  if (!rows.length) {
    el.append(paragraph("No drift figures yet: they appear once the deployment has scored rows.", "muted"));
    return;
  }
  el.dataset.features = String(rows.length);
  el.append(table(["Feature", "Importance", "Drift", "Warning at", "At risk at", "Rows", "Missing", "Status"],
    rows.map((r) => [r.name + (r.important ? " (important)" : ""), fmt(r.importance), fmt(r.value),
      fmt(r.thresholdWarning), fmt(r.thresholdAtRisk), String(r.rows ?? ""), percent(r.missingRate),
      r.reason && r.value == null ? r.reason : statusWord(r.status)])));
  const names = rows.slice(0, DRIFT_LINES).map((r) => r.name);
  const features = names.map((n) => `&feature=${encodeURIComponent(n)}`).join("");
  const plot = document.createElement("div");
  plot.className = "chart";
  plot.setAttribute("role", "img");
  plot.setAttribute("aria-label", "Drift of the most important features over time");
  el.append(heading(`Drift over time of the ${names.length} most important features`), plot);
  const windowed = (await fetchOrSay(plot, `${el.dataset.url}?${since}&windows=true${features}`)) as DriftAnswer | undefined;
  if (!windowed) return;
  const data = driftSeriesColumns(windowed, names);
  plot.dataset.points = String(data[0].length);
  if (!data[0].length) {
    say(plot, `No window holds ${windowed.minRows ?? "enough"} rows yet: drift over time appears as rows arrive.`);
    return;
  }
  new uPlot(
    {
      width: width(el),
      height: 240,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true,
        points: { show: true } }))],
      axes: [{ stroke: INK }, { stroke: INK, label: windowed.metric ?? "drift" }],
    },
    data as uPlot.AlignedData,
    plot,
  );
}

async function accuracy(el: HTMLElement): Promise<void> {
  const range = timeRange(hours(el), new Date());
  const url = `${el.dataset.url}?since=${encodeURIComponent(range.since)}&resolution=${range.resolution}`;
  const answer = (await fetchOrSay(el, url)) as AccuracyAnswer | undefined;
  if (!answer) return;
  el.replaceChildren();
  const metrics = accuracyMetrics(answer);
  if (!answer.rows) {
    say(el, "No accuracy yet: upload actuals (the ids and true values of scored rows) to see it.");
    return;
  }
  el.dataset.rows = String(answer.rows);
  el.append(paragraph(`${answer.rows} predictions with actuals (${answer.targetType ?? "model"}).`));
  el.append(table(["Metric", "Value"], Object.entries(answer.metrics ?? {}).map(([k, v]) => [k.replace(/_/g, " "), fmt(v)])));
  const plot = document.createElement("div");
  plot.className = "chart";
  plot.setAttribute("role", "img");
  plot.setAttribute("aria-label", "Accuracy over time");
  el.append(heading("Over time, by prediction time"), plot);
  new uPlot(
    {
      width: width(el),
      height: 240,
      series: [{}, ...metrics.map((m, i) => ({ label: m.replace(/_/g, " "), stroke: PALETTE[i % PALETTE.length], width: 2,
        spanGaps: true, points: { show: true } }))],
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
  const list = shownAlerts(answer, Boolean(el.dataset.openOnly));
  if (!list.length) {
    say(el, el.dataset.openOnly ? "No open alerts." : "No alerts for this deployment.");
    return;
  }
  const head = el.dataset.openOnly ? ["Deployment", "Rule", "Opened", "Message"] : ["Rule", "State", "Opened", "Cleared", "Message"];
  const rows = list.map((a) => el.dataset.openOnly
    ? [a.deploymentId, a.rule, when(a.openedAt), a.message]
    : [a.rule, a.state, when(a.openedAt), a.clearedAt ? when(a.clearedAt) : "", a.message]);
  el.replaceChildren(table(head, rows));
  if (el.dataset.openOnly) {
    // the deployment column links to the deployment's Alerts tab
    el.querySelectorAll("tbody tr").forEach((tr, i) => {
      const cell = tr.firstElementChild as HTMLElement;
      const link = document.createElement("a");
      link.href = `${el.dataset.base ?? "/ui"}/deployments/${encodeURIComponent(list[i].deploymentId)}?tab=alerts`;
      link.textContent = list[i].deploymentId;
      cell.replaceChildren(link);
    });
  }
}

function when(iso: string): string {
  return relativeTime(new Date(iso), new Date());
}

function paragraph(text: string, cls = ""): HTMLElement {
  const p = document.createElement("p");
  if (cls) p.className = cls;
  p.textContent = text;
  return p;
}

function heading(text: string): HTMLElement {
  const h = document.createElement("h3");
  h.textContent = text;
  return h;
}

function percent(v: number | null | undefined): string {
  return v === null || v === undefined ? "" : `${Number((v * 100).toPrecision(3))}%`;
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
