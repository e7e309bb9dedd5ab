import { describe, expect, it } from "vitest";

import { apiErrorText, localTime, relativeTime } from "../src/format";

describe("relativeTime", () => {
  const now = new Date("2026-12-07T12:00:00Z");
  it("says just now within ten seconds", () => {
    expect(relativeTime(new Date("2026-12-07T11:59:55Z"), now)).toBe("just now");
  });
  it("picks the largest unit that fits", () => {
    expect(relativeTime(new Date("2026-12-07T11:57:00Z"), now)).toBe("3 minutes ago");
    expect(relativeTime(new Date("2026-12-07T09:00:00Z"), now)).toBe("3 hours ago");
    expect(relativeTime(new Date("2026-12-06T12:00:00Z"), now)).toBe("yesterday");
    expect(relativeTime(new Date("2026-12-07T14:00:00Z"), now)).toBe("in 2 hours");
  });
});

describe("localTime", () => {
  it("shows the moment in the viewer's zone", () => {
    const when = new Date("2026-12-07T12:00:00Z");
    expect(localTime(when, "Europe/Berlin")).toContain("13:00:00");
    expect(localTime(when, "America/New_York")).toContain("07:00:00");
  });
});

describe("apiErrorText", () => {
  it("gives the service's own message with a word for the status", () => {
    expect(apiErrorText(409, { detail: "the last admin token cannot be revoked" })).toBe(
      "Refused: the last admin token cannot be revoked",
    );
    expect(apiErrorText(403, { detail: "this needs an admin token" })).toBe("Not allowed: this needs an admin token");
  });
  it("says something for answers without a body", () => {
    expect(apiErrorText(0, null)).toBe("The service could not be reached");
    expect(apiErrorText(502, null)).toBe("The service failed (HTTP 502)");
  });
});
