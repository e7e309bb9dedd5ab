/** Actuals files into the API's shape, and the service's answer into words (pure, unit-tested). */

import Papa from "papaparse";

export interface ActualRow {
  associationId: string;
  actualValue: string;
  timestamp?: string;
  wasActedOn?: boolean;
}

export interface ActualsAnswer {
  received: number;
  stored: number;
  duplicate: number;
  rejected: number;
  problems?: { index: number; associationId?: string | null; outcome: string; reason: string }[];
}

const TRUE = new Set(["true", "1", "yes", "t", "y"]);
const FALSE = new Set(["false", "0", "no", "f", "n"]);

/**
 * A CSV's rows as `{"data": [...]}` rows, as `shipmate actuals upload` reads them: the id and value
 * columns named by the form (DataRobot's `associationId`, `actualValue` by default), an optional
 * `timestamp` and `wasActedOn`. Values stay text: the service checks them against the model.
 * Throws an Error whose message names the file's problem.
 */
export function actualsFromCsv(text: string, idColumn = "associationId", valueColumn = "actualValue"): ActualRow[] {
  const parsed = Papa.parse<Record<string, string>>(text.replace(/^\uFEFF/, ""), {
    header: true,
    skipEmptyLines: true,
  });
  const columns = parsed.meta.fields ?? [];
  for (const needed of [idColumn, valueColumn]) {
    if (!columns.includes(needed)) {
      throw new Error(`The file has no column "${needed}" (its columns: ${columns.join(", ") || "none"})`);
    }
  }
  const broken = parsed.errors.find((e) => e.type !== "FieldMismatch" || e.code !== "TooFewFields");
  if (broken) throw new Error(`Row ${(broken.row ?? 0) + 2}: ${broken.message}`);
  if (!parsed.data.length) throw new Error("The file has no rows");
  return parsed.data.map((record, i) => {
    const row: ActualRow = { associationId: record[idColumn] ?? "", actualValue: record[valueColumn] ?? "" };
    if (record.timestamp) row.timestamp = record.timestamp;
    const acted = (record.wasActedOn ?? "").trim().toLowerCase();
    if (TRUE.has(acted)) row.wasActedOn = true;
    else if (FALSE.has(acted)) row.wasActedOn = false;
    else if (acted) throw new Error(`Row ${i + 2}: wasActedOn "${record.wasActedOn}" is not true or false`);
    return row;
  });
}

/** A JSON file: `{"data": [...]}` as the API takes it, or just the list of rows. */
export function actualsFromJson(text: string): unknown[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error("The file is not valid JSON");
  }
  const rows = Array.isArray(doc) ? doc : (doc as { data?: unknown } | null)?.data;
  if (!Array.isArray(rows)) throw new Error('The JSON file holds neither a list of rows nor {"data": [...]}');
  return rows;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * What the service did, in words: the counts, then each refused row (numbered as in a CSV file,
 * the header being row 1), at most `shown` of them.
 */
export function actualsSummary(answer: ActualsAnswer, csv: boolean, shown = 10): string[] {
  const lines = [
    `${answer.stored} of ${plural(answer.received, "actual")} stored, ${plural(answer.duplicate, "duplicate")}, ` +
      `${answer.rejected} refused`,
  ];
  const problems = answer.problems ?? [];
  for (const p of problems.slice(0, shown)) {
    lines.push(`${csv ? `Row ${p.index + 2}` : `Item ${p.index + 1}`}: ${p.outcome}: ${p.reason}`);
  }
  if (problems.length > shown) lines.push(`… and ${problems.length - shown} more`);
  return lines;
}
