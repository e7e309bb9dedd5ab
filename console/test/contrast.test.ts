import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

/** WCAG 2 contrast ratio of two #rrggbb colours. */
function contrast(a: string, b: string): number {
  const luminance = (hex: string) => {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
    const lin = (c: number) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

const css = readFileSync(new URL("../src/console.css", import.meta.url), "utf8");
const variables = Object.fromEntries([...css.matchAll(/--([a-z]+):\s*(#[0-9a-f]{6})/g)].map((m) => [m[1], m[2]]));

describe("contrast (WCAG AA: 4.5:1 for text)", () => {
  it("badges: white text on every badge colour", () => {
    const badges = [...css.matchAll(/\.badge[-a-z]*[^{]*\{[^}]*background:\s*(#[0-9a-f]{6})/g)].map((m) => m[1]);
    expect(badges.length).toBeGreaterThanOrEqual(5);
    for (const colour of badges) expect(contrast("#ffffff", colour)).toBeGreaterThanOrEqual(4.5);
  });
  it("text colours on the page and on the table headers", () => {
    for (const name of ["ink", "muted", "accent", "ok", "warn", "bad"]) {
      expect(contrast(variables[name], variables.bg)).toBeGreaterThanOrEqual(4.5);
      expect(contrast(variables[name], variables.panel)).toBeGreaterThanOrEqual(4.5);
    }
  });
  it("the check can fail", () => {
    expect(contrast("#ffffff", "#f0b400")).toBeLessThan(4.5);
  });
});
