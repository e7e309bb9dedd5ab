/** The console's browser side: local times, live updates from the change feed, actions, charts. */

import htmx from "htmx.org";

htmx.config.allowEval = false; // no page content ever runs as script
// A page whose subject has gone (a deleted deployment) is swapped in too: it says so.
htmx.config.responseHandling = [
  { code: "204", swap: false },
  { code: "[23]..", swap: true },
  { code: "404", swap: true },
  { code: "[45]..", swap: false, error: true },
];

import "./console.css";
import { install, notice } from "./actions";
import { draw } from "./charts";
import { localTime, relativeTime } from "./format";
import { follow, LIVE_WORDS } from "./live";

function formatTimes(root: ParentNode): void {
  const now = new Date();
  for (const el of root.querySelectorAll<HTMLTimeElement>("time[datetime]")) {
    const when = new Date(el.dateTime);
    if (Number.isNaN(when.getTime())) continue;
    el.textContent = relativeTime(when, now);
    el.title = localTime(when);
  }
}

/** Someone is typing or choosing: a refresh now would throw their input away. */
function busy(): boolean {
  const active = document.activeElement;
  if (document.querySelector("dialog[open]")) return true;
  return !!active && !!active.closest("#main form, #main details[open]") && active.tagName !== "BUTTON";
}

let pending: ReturnType<typeof setTimeout> | undefined;

/** The current page again, only its main part swapped in (htmx), e.g. after an event. */
function refresh(): void {
  clearTimeout(pending);
  pending = setTimeout(() => {
    if (busy()) {
      pending = setTimeout(refresh, 1000);
      return;
    }
    void htmx.ajax("get", window.location.href, { target: "#main", select: "#main", swap: "outerHTML" });
  }, 150);
}

function following(): boolean {
  const box = document.querySelector<HTMLInputElement>("[data-follow]");
  return box ? box.checked : true;
}

function start(): void {
  formatTimes(document);
  void draw(document);
  install(refresh);
  document.body.addEventListener("htmx:afterSwap", () => {
    const main = document.getElementById("main");
    if (!main) return;
    formatTimes(main);
    void draw(main);
  });
  document.addEventListener("change", (event) => {
    const select = (event.target as HTMLElement).closest<HTMLSelectElement>("[data-range]");
    const panel = select?.closest(".panel");
    if (panel) void draw(panel);
  });
  setInterval(() => formatTimes(document), 30_000);
  let resized: ReturnType<typeof setTimeout> | undefined;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(() => void draw(document), 200);
  });
  setInterval(() => {
    const charts = document.querySelector(".panel [data-chart=service-health]");
    if (charts && !document.hidden) void draw(charts.parentElement as HTMLElement);
  }, 15_000);

  const indicator = document.getElementById("live");
  if (!indicator) return; // not signed in
  const types = (document.body.dataset.types ?? "").split(" ").filter(Boolean);
  follow({
    url: (cursor) => `/api/v1/events/stream?after=${cursor}`,
    types,
    cursor: Number(document.body.dataset.cursor ?? 0),
    onEvent: () => {
      if (following()) refresh();
    },
    onState: (state) => {
      indicator.dataset.state = state;
      indicator.textContent = LIVE_WORDS[state];
      if (state === "lost") notice("Lost the connection to the service; resuming from the last event seen…", "error");
      if (state === "live" && document.getElementById("notice")?.textContent?.startsWith("Lost the connection")) {
        notice("Connected again; the page is up to date");
        refresh();
      }
    },
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
