import { afterEach, describe, expect, it, vi } from "vitest";

import { follow, type LiveState } from "../src/live";

/** The browser's EventSource, at the boundary: the test drives its open, messages and failures. */
class FakeSource {
  static CLOSED = 2;
  static made: FakeSource[] = [];
  readyState = 0;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onmessage: ((e: MessageEvent) => void) | null = null;
  listeners: Record<string, (e: MessageEvent) => void> = {};
  constructor(readonly url: string) {
    FakeSource.made.push(this);
  }
  addEventListener(type: string, handler: (e: MessageEvent) => void) {
    this.listeners[type] = handler;
  }
  close() {
    this.readyState = FakeSource.CLOSED;
  }
  emit(type: string, id: number) {
    this.listeners[type]({ type, lastEventId: String(id) } as MessageEvent);
  }
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
  FakeSource.made = [];
});

describe("follow", () => {
  it("says when the connection is lost and resumes from the cursor it reached", () => {
    vi.useFakeTimers();
    vi.stubGlobal("EventSource", FakeSource);
    const states: LiveState[] = [];
    const seen: number[] = [];
    follow({
      url: (cursor) => `/api/v1/events/stream?after=${cursor}`,
      types: ["deployment.updated"],
      cursor: 7,
      onEvent: (_type, id) => seen.push(id),
      onState: (state) => states.push(state),
      retryMs: 1000,
    });
    const first = FakeSource.made[0];
    expect(first.url).toBe("/api/v1/events/stream?after=7");
    first.onopen?.();
    first.emit("deployment.updated", 8);
    first.emit("deployment.updated", 9);
    first.readyState = FakeSource.CLOSED; // the service went away and the browser gave up
    first.onerror?.();
    expect(states).toEqual(["connecting", "live", "lost"]);
    vi.advanceTimersByTime(1000);
    expect(FakeSource.made[1].url).toBe("/api/v1/events/stream?after=9");
    FakeSource.made[1].onopen?.();
    expect(states.at(-1)).toBe("live");
    expect(seen).toEqual([8, 9]);
  });

  it("leaves a reconnect the browser is making itself alone", () => {
    vi.stubGlobal("EventSource", FakeSource);
    const states: LiveState[] = [];
    follow({ url: () => "/s", types: [], cursor: 0, onEvent: () => {}, onState: (s) => states.push(s) });
    FakeSource.made[0].readyState = 0; // CONNECTING: EventSource retries with Last-Event-ID
    FakeSource.made[0].onerror?.();
    expect(states).toEqual(["connecting", "lost"]);
    expect(FakeSource.made).toHaveLength(1);
  });
});
