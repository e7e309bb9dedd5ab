import { describe, expect, it } from "vitest";

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
} from "../src/series";

describe("healthColumns", () => {
  it("turns periods into x seconds, requests and p95", () => {
    const answer = {
      periods: [
        { start: "2026-12-07T12:00:00Z", totalRequests: 3, responseTimeMs: { p95: 30 } },
        { start: "2026-12-07T12:01:00Z", totalRequests: 0, responseTimeMs: { p95: null } },
      ],
    };
    expect(healthColumns(answer)).toEqual([[1796644800, 1796644860], [3, 0], [30, null]]);
  });
  it("is empty without periods", () => {
    expect(healthColumns({})).toEqual([[], [], []]);
  });
});

describe("drift", () => {
  it("orders by importance, then by drift", () => {
    const rows = driftRows({
      features: [
        { name: "a", value: 0.1, importance: 0.2 },
        { name: "b", value: 0.5, importance: 1 },
        { name: "c", value: 0.9, importance: null },
        { name: "d", value: 0.3, importance: null },
      ],
    });
    expect(rows.map((r) => r.name)).toEqual(["b", "a", "c", "d"]);
  });
  it("lines up each named feature's drift by window, null where a window has no figure", () => {
    const answer = {
      windows: [
        { start: "2026-12-07T12:00:00Z", end: "2026-12-07T12:15:00Z", rows: 300 },
        { start: "2026-12-07T12:15:00Z", end: "2026-12-07T12:45:00Z", rows: 250 },
      ],
      series: {
        "feature:age": [{ name: "age", value: 0.01 }, { name: "age", value: 0.4 }],
        "feature:city": [{ name: "city", value: null }],
        "prediction:score": [{ name: "score", value: 9 }, { name: "score", value: 9 }],
      },
    };
    expect(driftSeriesColumns(answer, ["age", "city", "gone"])).toEqual([
      [1796644800, 1796645700],
      [0.01, 0.4],
      [null, null],
      [null, null],
    ]);
    expect(driftSeriesColumns({}, ["age"])).toEqual([[], []]);
  });
  it("says statuses in words", () => {
    expect(statusWord("at_risk")).toBe("at risk");
    expect(statusWord("ok")).toBe("no drift");
    expect(statusWord("red")).toBe("red: important features drift");
    expect(statusWord("no_data")).toBe("no data");
    expect(statusWord(undefined)).toBe("unknown");
  });
});

describe("accuracy", () => {
  it("finds the numeric metrics of the timeline and lines them up", () => {
    const answer = {
      timeline: [
        { start: "2026-12-07T12:00:00Z", rows: 10, metrics: { rmse: 1.5, r2: null } },
        { start: "2026-12-07T13:00:00Z", rows: 0, metrics: { auc: 0.8 } },
      ],
    };
    expect(accuracyMetrics(answer)).toEqual(["auc", "rmse"]);
    expect(accuracyColumns(answer, ["auc", "rmse"])).toEqual([[1796644800, 1796648400], [null, 0.8], [1.5, null]]);
  });
});

describe("alerts", () => {
  const alerts = [
    { id: 2, deploymentId: "d", rule: "drift", state: "open", openedAt: "2026-12-07T12:00:00Z", clearedAt: null, message: "m" },
    { id: 1, deploymentId: "d", rule: "error_rate", state: "cleared", openedAt: "2026-12-07T11:00:00Z", clearedAt: "2026-12-07T11:30:00Z", message: "m" },
  ];
  it("keeps only the open ones for the overview", () => {
    expect(shownAlerts(alerts, true).map((a) => a.id)).toEqual([2]);
    expect(shownAlerts(alerts, false).map((a) => a.id)).toEqual([2, 1]);
    expect(shownAlerts({ detail: "x" }, false)).toEqual([]);
  });
});

describe("histogram", () => {
  it("labels numeric bins and drops empty outside bins", () => {
    const h = histogram({ type: "numeric", edges: [0, 10, 20], counts: [0, 4, 6, 0, 0] });
    expect(h).toEqual({ labels: ["0–10", "10–20"], counts: [4, 6] });
  });
  it("keeps outside bins that hold rows", () => {
    const h = histogram({ type: "numeric", edges: [0, 10], counts: [2, 4, 0, 1] });
    expect(h.labels).toEqual(["< 0", "0–10", "missing"]);
    expect(h.counts).toEqual([2, 4, 1]);
  });
  it("labels categories", () => {
    const h = histogram({ type: "categorical", values: ["a", "b"], counts: [3, null, 1, 0] });
    expect(h).toEqual({ labels: ["a", "b", "other"], counts: [3, 0, 1] });
  });
});

describe("timeRange", () => {
  it("chooses a resolution that keeps the chart readable", () => {
    const now = new Date("2026-12-07T12:00:00Z");
    expect(timeRange(1, now)).toEqual({ since: "2026-12-07T11:00:00.000Z", resolution: "minute" });
    expect(timeRange(24, now).resolution).toBe("hour");
    expect(timeRange(720, now).resolution).toBe("day");
  });
});
