/**
 * Server-Sent Events transport.
 *
 * A stream is started with `POST /api/streams` and read from its `events_url`
 * by one of two readers:
 *
 * - `eventsource` (default): the browser's EventSource. It reconnects by itself
 *   after a dropped connection and sends `Last-Event-ID`. It gives up for good on
 *   a non-200 answer or a failed reconnect (readyState CLOSED); we then check the
 *   stream still exists and open a new one with `?after=<last id>`, with backoff
 *   and jitter.
 * - `fetch`: `fetch` + eventsource-parser. Sees HTTP statuses and error bodies,
 *   notices a silent connection (no heartbeat within `idleTimeoutMs`), and
 *   reconnects with `?after=` the same way.
 *
 * Either way events pass the id filter in `Delivery`, so a replay after a
 * reconnect shows no duplicated text.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { postQuizAnswer } from './api.ts';
import {
  EVENT_TYPES,
  parseSSEMessage,
  startBody,
  type QuizAnswer,
  type StartRequest,
  type StreamCreated,
  type StreamEvent,
  type StreamStatus,
} from './events.ts';
import {
  DEFAULT_BACKOFF,
  Delivery,
  StreamRequestError,
  backoffDelay,
  failureFromResponse,
  failureOf,
  type BackoffOptions,
  type StreamHandle,
  type StreamHandlers,
  type StreamTransport,
} from './transport.ts';
import { apiUrl, normalizeBase, serverUrl } from './urls.ts';

export interface SSETransportOptions {
  /** Where the host mounted our routes: '' (the page's origin), `/ai`, or `https://api.example.com/ai`. */
  baseUrl?: string;
  reader?: 'eventsource' | 'fetch';
  /** EventSource implementation (tests inject one); the global by default. */
  EventSource?: typeof EventSource;
  /** fetch implementation; the global (looked up on each call) by default. */
  fetch?: typeof fetch;
  backoff?: Partial<BackoffOptions>;
  /** fetch reader: reconnect when nothing, not even a `: hb` heartbeat, arrived for this long. */
  idleTimeoutMs?: number;
}

const EVENTSOURCE_CLOSED = 2;

interface Reader {
  close(): void;
}

interface ReaderContext {
  url: string;
  statusUrl: string;
  delivery: Delivery;
  backoff: BackoffOptions;
  fetch: typeof fetch;
}

export function withAfter(url: string, after: string | null): string {
  if (!after) return url;
  return `${url}${url.includes('?') ? '&' : '?'}after=${encodeURIComponent(after)}`;
}

function giveUp(ctx: ReaderContext, attempts: number): void {
  ctx.delivery.fail({
    source: 'transport',
    code: 'connection_lost',
    message: `lost the connection to the stream (${attempts} attempts to reconnect failed)`,
    retryable: true,
  });
}

/** A 404 on the status URL: the stream is gone (expired or never existed), so stop retrying. */
/**
 * Why EventSource gave up, from the stream's status: `gone` (404), `read` (it ended and we hold
 * its last event: the server answered 204, which EventSource reports as an error) or `retry`.
 */
async function afterGivingUp(ctx: ReaderContext): Promise<'gone' | 'read' | 'retry'> {
  try {
    const response = await ctx.fetch(ctx.statusUrl, { headers: { accept: 'application/json' }, cache: 'no-store' });
    if (response.status === 404) return 'gone';
    if (!response.ok) return 'retry';
    const status = (await response.json()) as StreamStatus;
    const ended = status.status !== 'running';
    return ended && status.last_event_id === ctx.delivery.cursor.lastEventId ? 'read' : 'retry';
  } catch {
    return 'retry';
  }
}

class EventSourceReader implements Reader {
  private source: EventSource | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private opened = false;
  private minDelayMs = 0;

  constructor(
    private readonly ctx: ReaderContext,
    private readonly EventSourceImpl: typeof EventSource,
  ) {}

  connect(): void {
    const { delivery } = this.ctx;
    if (delivery.closed) return;
    delivery.connection(this.opened ? 'reconnecting' : 'connecting');
    const source = new this.EventSourceImpl(withAfter(this.ctx.url, delivery.cursor.lastEventId));
    this.source = source;
    source.addEventListener('open', () => {
      this.opened = true;
      this.attempt = 0;
      delivery.connection('open');
    });
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => this.onMessage(type, message as MessageEvent<string>));
    }
    source.addEventListener('error', () => this.onError(source));
  }

  private onMessage(type: string, message: MessageEvent<string>): void {
    const event = parseSSEMessage(type, message.lastEventId, message.data);
    if (event === null) return;
    if (event.type === 'shutdown') this.minDelayMs = event.data.retry_after_ms;
    this.ctx.delivery.deliver(event);
  }

  private onError(source: EventSource): void {
    const { delivery, backoff } = this.ctx;
    if (delivery.closed || source !== this.source) return;
    this.attempt += 1;
    if (this.attempt > backoff.maxRetries) {
      this.close();
      giveUp(this.ctx, this.attempt - 1);
      return;
    }
    if (source.readyState !== EVENTSOURCE_CLOSED) {
      // The browser reconnects by itself, sending Last-Event-ID.
      delivery.connection('reconnecting');
      return;
    }
    // The browser gave up (non-200, or a failed reconnect): reconnect ourselves with ?after=.
    source.close();
    this.source = null;
    delivery.connection('reconnecting');
    const delay = Math.max(backoffDelay(this.attempt - 1, backoff), this.minDelayMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      void afterGivingUp(this.ctx).then((why) => {
        if (delivery.closed) return;
        if (why === 'gone') {
          delivery.fail({
            source: 'transport',
            code: 'stream_not_found',
            message: 'the stream is gone from the server (expired or unknown)',
            retryable: false,
          });
        } else if (why === 'read') {
          delivery.finish(true); // nothing after our cursor, as the fetch reader's 204
        } else {
          this.connect();
        }
      });
    }, delay);
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.source?.close();
    this.source = null;
  }
}

class FetchReader implements Reader {
  private controller: AbortController | null = null;
  private wake: (() => void) | null = null;
  private attempt = 0;
  private minDelayMs = 0;

  constructor(
    private readonly ctx: ReaderContext,
    private readonly idleTimeoutMs: number,
  ) {}

  async run(): Promise<void> {
    const { delivery, backoff } = this.ctx;
    let opened = false;
    while (!delivery.closed) {
      delivery.connection(opened ? 'reconnecting' : 'connecting');
      const controller = new AbortController();
      this.controller = controller;
      try {
        const response = await this.ctx.fetch(withAfter(this.ctx.url, delivery.cursor.lastEventId), {
          headers: { accept: 'text/event-stream' },
          cache: 'no-store',
          signal: controller.signal,
        });
        if (delivery.closed) return;
        if (response.status === 204) {
          // Nothing after our cursor: the stream had already ended and we hold its end.
          delivery.finish(true);
          return;
        }
        if (!response.ok || response.body === null) {
          const failure = await failureFromResponse(response);
          if (!failure.retryable) {
            delivery.fail({ ...failure, source: 'transport' });
            return;
          }
        } else {
          opened = true;
          delivery.connection('open');
          await this.pump(response.body, controller);
        }
      } catch {
        // network error, or aborted by the idle watchdog or by close()
      }
      if (delivery.closed) return;
      this.attempt += 1;
      if (this.attempt > backoff.maxRetries) {
        giveUp(this.ctx, this.attempt - 1);
        return;
      }
      delivery.connection('reconnecting');
      await this.sleep(Math.max(backoffDelay(this.attempt - 1, backoff), this.minDelayMs));
    }
  }

  private async pump(body: ReadableStream<Uint8Array>, controller: AbortController): Promise<void> {
    const { delivery } = this.ctx;
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = createParser({
      onEvent: (message: EventSourceMessage) => {
        const event: StreamEvent | null = parseSSEMessage(message.event, message.id, message.data);
        if (event === null) return;
        this.attempt = 0;
        if (event.type === 'shutdown') this.minDelayMs = event.data.retry_after_ms;
        delivery.deliver(event);
      },
    });
    let idle: ReturnType<typeof setTimeout> | null = null;
    const arm = () => {
      if (idle !== null) clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), this.idleTimeoutMs);
    };
    arm();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || delivery.closed) break;
        arm();
        parser.feed(decoder.decode(value, { stream: true }));
        if (delivery.closed) break;
      }
    } finally {
      if (idle !== null) clearTimeout(idle);
      reader.cancel().catch(() => undefined);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  close(): void {
    this.controller?.abort();
    this.controller = null;
    this.wake?.();
  }
}

export function createSSETransport(options: SSETransportOptions = {}): StreamTransport {
  const base = normalizeBase(options.baseUrl);
  const readerKind = options.reader ?? 'eventsource';
  const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...options.backoff };
  const fetchFn: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const idleTimeoutMs = options.idleTimeoutMs ?? 45_000;
  const streamPath = (streamId: string) => apiUrl(base, `/api/streams/${encodeURIComponent(streamId)}`);

  function open(streamId: string, afterId: string | null, handlers: StreamHandlers, eventsUrl?: string | null): StreamHandle {
    let reader: Reader | null = null;
    const delivery = new Delivery(handlers, afterId, () => reader?.close());
    const ctx: ReaderContext = {
      url: eventsUrl ? serverUrl(base, eventsUrl) : `${streamPath(streamId)}/events`,
      statusUrl: streamPath(streamId),
      delivery,
      backoff,
      fetch: fetchFn,
    };
    if (readerKind === 'fetch') {
      const fetchReader = new FetchReader(ctx, idleTimeoutMs);
      reader = fetchReader;
      void fetchReader.run();
    } else {
      const EventSourceImpl = options.EventSource ?? globalThis.EventSource;
      const esReader = new EventSourceReader(ctx, EventSourceImpl);
      reader = esReader;
      esReader.connect();
    }
    return {
      streamId,
      get lastEventId() {
        return delivery.cursor.lastEventId;
      },
      get closed() {
        return delivery.closed;
      },
      stop: () => transport.stop(streamId),
      close: () => delivery.finish(false),
    };
  }

  const transport: StreamTransport = {
    kind: readerKind === 'fetch' ? 'sse-fetch' : 'sse',

    async start(request: StartRequest, handlers: StreamHandlers): Promise<StreamHandle> {
      let response: Response;
      try {
        response = await fetchFn(apiUrl(base, '/api/streams'), {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(startBody(request)),
        });
      } catch (error) {
        throw new StreamRequestError(failureOf(error));
      }
      if (!response.ok) throw new StreamRequestError(await failureFromResponse(response));
      const created = (await response.json()) as StreamCreated;
      return open(created.stream_id, null, handlers, created.events_url);
    },

    resume(streamId: string, afterId: string | null, handlers: StreamHandlers): StreamHandle {
      return open(streamId, afterId, handlers);
    },

    async stop(streamId: string): Promise<void> {
      let response: Response;
      try {
        response = await fetchFn(`${streamPath(streamId)}/stop`, { method: 'POST', headers: { accept: 'application/json' } });
      } catch (error) {
        throw new StreamRequestError(failureOf(error));
      }
      if (!response.ok && response.status !== 404) throw new StreamRequestError(await failureFromResponse(response));
    },

    answer(streamId: string, index: number, choice: number): Promise<QuizAnswer> {
      return postQuizAnswer(streamId, index, choice, base, fetchFn);
    },
  };
  return transport;
}
