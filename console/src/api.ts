/** The REST API, called with the console's session cookie and its CSRF token (as the CLI calls it with a token). */

import { apiErrorText, type ApiError } from "./format";

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function csrfHeaders(): Record<string, string> {
  const token = document.querySelector<HTMLMetaElement>("meta[name=csrf-token]")?.content;
  const header = document.querySelector<HTMLMetaElement>("meta[name=csrf-header]")?.content;
  return token && header ? { [header]: token } : {};
}

export async function call(method: string, url: string, body?: BodyInit | object, contentType?: string): Promise<unknown> {
  const headers: Record<string, string> = { Accept: "application/json", ...csrfHeaders() };
  let payload: BodyInit | undefined;
  if (body instanceof Blob || typeof body === "string") {
    payload = body;
    headers["Content-Type"] = contentType ?? "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  } catch {
    throw new ApiFailure(0, apiErrorText(0, null));
  }
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiFailure(response.status, apiErrorText(response.status, parsed as ApiError | null));
  return parsed;
}
