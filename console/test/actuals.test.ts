import { describe, expect, it } from "vitest";

import { actualsFromCsv, actualsFromJson, actualsSummary } from "../src/actuals";

describe("actualsFromCsv", () => {
  it("reads DataRobot's columns into the API's rows, quoted fields and a BOM included", () => {
    const csv = '\uFEFFassociationId,actualValue,timestamp,wasActedOn\r\na,"1,5",2026-12-07T12:00:00Z,yes\r\nb,no,,\r\n\r\nc,yes,,false\r\n';
    expect(actualsFromCsv(csv)).toEqual([
      { associationId: "a", actualValue: "1,5", timestamp: "2026-12-07T12:00:00Z", wasActedOn: true },
      { associationId: "b", actualValue: "no" },
      { associationId: "c", actualValue: "yes", wasActedOn: false },
    ]);
  });
  it("takes the column names the form gives", () => {
    expect(actualsFromCsv("id,truth\nx,3\n", "id", "truth")).toEqual([{ associationId: "x", actualValue: "3" }]);
  });
  it("names a missing column, a bad flag and an empty file", () => {
    expect(() => actualsFromCsv("id,value\nx,1\n")).toThrow('no column "associationId" (its columns: id, value)');
    expect(() => actualsFromCsv("associationId,actualValue,wasActedOn\na,1,maybe\n")).toThrow(
      'Row 2: wasActedOn "maybe" is not true or false',
    );
    expect(() => actualsFromCsv("associationId,actualValue\n")).toThrow("no rows");
  });
});

describe("actualsFromJson", () => {
  it("accepts the API's document or a bare list", () => {
    expect(actualsFromJson('{"data": [{"associationId": "a", "actualValue": 1}]}')).toHaveLength(1);
    expect(actualsFromJson('[{"associationId": "a", "actualValue": 1}]')).toHaveLength(1);
    expect(() => actualsFromJson("{")).toThrow("not valid JSON");
    expect(() => actualsFromJson('{"rows": []}')).toThrow("neither a list");
  });
});

describe("actualsSummary", () => {
  it("says the counts and each refused row, numbered as in the file", () => {
    const answer = {
      received: 4,
      stored: 2,
      duplicate: 1,
      rejected: 1,
      problems: [
        { index: 1, associationId: "b", outcome: "duplicate", reason: "an actual was already reported" },
        { index: 3, associationId: "zz", outcome: "rejected", reason: "no prediction with association id 'zz'" },
      ],
    };
    expect(actualsSummary(answer, true)).toEqual([
      "2 of 4 actuals stored, 1 duplicate, 1 refused",
      "Row 3: duplicate: an actual was already reported",
      "Row 5: rejected: no prediction with association id 'zz'",
    ]);
    expect(actualsSummary(answer, false, 1)).toEqual([
      "2 of 4 actuals stored, 1 duplicate, 1 refused",
      "Item 2: duplicate: an actual was already reported",
      "… and 1 more",
    ]);
    expect(actualsSummary({ received: 1, stored: 1, duplicate: 0, rejected: 0 }, true)).toEqual([
      "1 of 1 actual stored, 0 duplicates, 0 refused",
    ]);
  });
});
