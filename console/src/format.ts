/** Words for people: times in the viewer's own zone with a relative part, API errors as sentences. */

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "3 minutes ago", "in 2 hours", "just now": the largest unit that fits. */
export function relativeTime(when: Date, now: Date): string {
  const seconds = Math.round((when.getTime() - now.getTime()) / 1000);
  if (Math.abs(seconds) < 10) return "just now";
  const format = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return format.format(Math.trunc(seconds / size), unit);
    }
  }
  return "just now";
}

/** The moment in the viewer's time zone, e.g. "7 Dec 2026, 19:31:05 CET". */
export function localTime(when: Date, timeZone?: string): string {
  return new Intl.DateTimeFormat("en-GB", {
    dateStyle: "medium",
    timeStyle: "long",
    timeZone,
  }).format(when);
}

export interface ApiError {
  detail?: unknown;
  field?: unknown;
}

/** One sentence for a failed request: the service's own message when it sent one. */
export function apiErrorText(status: number, body: ApiError | null): string {
  const detail = body && typeof body.detail === "string" ? body.detail : null;
  if (detail) return `${statusWord(status)}: ${detail}`;
  return statusWord(status);
}

function statusWord(status: number): string {
  switch (status) {
    case 0:
      return "The service could not be reached";
    case 401:
      return "Not signed in (the session ended)";
    case 403:
      return "Not allowed";
    case 404:
      return "Not found";
    case 409:
      return "Refused";
    case 413:
      return "Too large";
    case 422:
      return "Invalid input";
    case 503:
      return "The service is unavailable for a moment";
    default:
      return status >= 500 ? `The service failed (HTTP ${status})` : `The request failed (HTTP ${status})`;
  }
}
