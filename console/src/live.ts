/** The service's change feed (SSE): says when the connection is lost, and resumes from its cursor. */

export type LiveState = "connecting" | "live" | "lost" | "closed";

export interface LiveOptions {
  url: (cursor: number) => string;
  types: string[];
  cursor: number;
  onEvent: (type: string, id: number) => void;
  onState: (state: LiveState) => void;
  retryMs?: number;
}

/** Follows the feed until `stop()`; EventSource resumes after the last id itself, and when it gives
 * up (an answer that is not a stream), a new one starts from the cursor reached. */
export function follow(options: LiveOptions): { stop: () => void; cursor: () => number } {
  let cursor = options.cursor;
  let source: EventSource | null = null;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const open = () => {
    if (stopped) return;
    options.onState("connecting");
    source = new EventSource(options.url(cursor), { withCredentials: true });
    source.onopen = () => options.onState("live");
    source.onerror = () => {
      if (stopped || !source) return;
      options.onState("lost");
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        timer = setTimeout(open, options.retryMs ?? 3000);
      }
    };
    const handle = (event: MessageEvent) => {
      const id = Number(event.lastEventId);
      if (Number.isFinite(id) && id > cursor) cursor = id;
      options.onEvent(event.type, id);
    };
    for (const type of options.types) source.addEventListener(type, handle);
    source.onmessage = handle;
  };
  open();
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      source?.close();
      options.onState("closed");
    },
    cursor: () => cursor,
  };
}

export const LIVE_WORDS: Record<LiveState, string> = {
  connecting: "connecting…",
  live: "live",
  lost: "connection lost: reconnecting…",
  closed: "not following",
};
