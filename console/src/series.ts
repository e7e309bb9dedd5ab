/** API answers into the arrays the charts draw (pure, so they are unit-tested). */

export type Columns = [number[], ...(number | null)[][]];

interface HealthPeriod {
  start: string;
  totalRequests?: number;
  totalPredictions?: number;
  responseTimeMs?: Record<string, number | null>;
}

/** Service health: x in unix seconds, requests per period, p95 response time in ms. */
export function healthColumns(answer: { periods?: HealthPeriod[] }): Columns {
  const periods = answer.periods ?? [];
  return [
    periods.map((p) => Date.parse(p.start) / 1000),
    periods.map((p) => p.totalRequests ?? 0),
    periods.map((p) => p.responseTimeMs?.p95 ?? null),
  ];
}

export interface DriftFeature {
  name: string;
  metric?: string;
  value?: number | null;
  thresholdWarning?: number | null;
  thresholdAtRisk?: number | null;
  rows?: number;
  status?: string;
  importance?: number | null;
  important?: boolean;
  missingRate?: number | null;
  reason?: string | null;
}

export interface DriftAnswer {
  status?: string;
  metric?: string;
  rows?: number;
  minRows?: number;
  reason?: string | null;
  features?: DriftFeature[];
  predictions?: DriftFeature[];
  windows?: { start: string; end: string; rows: number }[];
  series?: Record<string, DriftFeature[]>;
}

/** Drift per feature, most important first (then the most drifted). */
export function driftRows(answer: { features?: DriftFeature[] }): DriftFeature[] {
  return [...(answer.features ?? [])].sort(
    (a, b) => (b.importance ?? -1) - (a.importance ?? -1) || (b.value ?? 0) - (a.value ?? 0),
  );
}

const STATUS_WORDS: Record<string, string> = {
  ok: "no drift",
  warning: "drifting",
  at_risk: "at risk",
  green: "green: no important feature drifts",
  yellow: "yellow: some drift",
  red: "red: important features drift",
};

/** A feature's or the deployment's drift status in words. */
export function statusWord(status: string | undefined): string {
  return STATUS_WORDS[status ?? ""] ?? (status ? status.replace(/_/g, " ") : "unknown");
}

/** Drift of each named column in each window: x is the window's start in unix seconds. */
export function driftSeriesColumns(answer: DriftAnswer, names: string[]): Columns {
  const windows = answer.windows ?? [];
  return [
    windows.map((w) => Date.parse(w.start) / 1000),
    ...names.map((n) => windows.map((_, i) => answer.series?.[`feature:${n}`]?.[i]?.value ?? null)),
  ];
}

export interface AccuracyAnswer {
  targetType?: string;
  rows?: number;
  metrics?: Record<string, number | null | undefined>;
  timeline?: { start: string; rows: number; metrics?: Record<string, number | null | undefined> }[];
}

/** The metric names that have a value in some period of the timeline. */
export function accuracyMetrics(answer: AccuracyAnswer): string[] {
  const names = new Set<string>();
  for (const point of answer.timeline ?? []) {
    for (const [key, value] of Object.entries(point.metrics ?? {})) {
      if (typeof value === "number") names.add(key);
    }
  }
  return [...names].sort();
}

export function accuracyColumns(answer: AccuracyAnswer, metrics: string[]): Columns {
  const timeline = answer.timeline ?? [];
  return [
    timeline.map((p) => Date.parse(p.start) / 1000),
    ...metrics.map((m) => timeline.map((p) => p.metrics?.[m] ?? null)),
  ];
}

export interface Alert {
  id: number;
  deploymentId: string;
  rule: string;
  kind?: string;
  state: string;
  openedAt: string;
  clearedAt?: string | null;
  message: string;
}

/** The alerts to show: all, or only the open ones (the overview's list). */
export function shownAlerts(answer: unknown, openOnly: boolean): Alert[] {
  const list = (Array.isArray(answer) ? answer : []) as Alert[];
  return openOnly ? list.filter((a) => a.state === "open") : list;
}

export interface Bins {
  type?: string;
  edges?: number[];
  values?: string[];
  counts?: (number | null)[] | null;
}

/** A baseline's bins as labelled bars: numeric [under, inner…, over, missing]; categorical [values…, other, missing]. */
export function histogram(bins: Bins): { labels: string[]; counts: number[] } {
  const counts = (bins.counts ?? []).map((c) => c ?? 0);
  let labels: string[];
  if (bins.values) {
    labels = [...bins.values, "other", "missing"];
  } else {
    const edges = bins.edges ?? [];
    const inner = edges.slice(1).map((e, i) => `${round(edges[i])}–${round(e)}`);
    labels = [`< ${round(edges[0] ?? 0)}`, ...inner, `> ${round(edges[edges.length - 1] ?? 0)}`, "missing"];
  }
  const keep = labels
    .map((_, i) => i)
    .filter((i) => i < counts.length && (counts[i] > 0 || !isOutside(labels[i])));
  return { labels: keep.map((i) => labels[i]), counts: keep.map((i) => counts[i]) };
}

/** The bins outside the baseline's range, shown only when something fell into them. */
function isOutside(label: string): boolean {
  return label === "missing" || label === "other" || label.startsWith("< ") || label.startsWith("> ");
}

function round(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString();
}

/** The `since` of a time range of `hours`, and the resolution that gives a readable number of points. */
export function timeRange(hours: number, now: Date): { since: string; resolution: string } {
  const since = new Date(now.getTime() - hours * 3600 * 1000).toISOString();
  return { since, resolution: hours <= 2 ? "minute" : hours <= 24 * 7 ? "hour" : "day" };
}
