/**
 * WebSocket transport over `/ws/streams`.
 *
 * One socket per transport carries every stream the page reads (the server
 * allows 16 per socket). Subscriptions are counted: the socket opens with the
 * first and closes with the last, so nothing stays open after the streams end
 * or the components unmount.
 *
 * After an unexpected close the socket reconnects with backoff and jitter and
 * sends `resume` with each stream's last event id; the server answers with
 * exactly the events after it, and `Delivery` drops any duplicate anyway.
 */
import { postQuizAnswer } from './api.ts';
import {
  startBody,
  type QuizAnswer,
  toStreamEvent,
  type StartRequest,
  type WsAccepted,
  type WsClientMessage,
  type WsRejected,
} from './events.ts';
import {
  DEFAULT_BACKOFF,
  Delivery,
  StreamRequestError,
  backoffDelay,
  requestId,
  type BackoffOptions,
  type StreamFailure,
  type StreamHandle,
  type StreamHandlers,
  type StreamTransport,
} from './transport.ts';
import { apiUrl, socketUrl } from './urls.ts';

export interface WebSocketTransportOptions {
  /** Where the host mounted our routes ('' by default): the socket is `<baseUrl>/ws/streams`, stop falls back to `<baseUrl>/api/...`. */
  baseUrl?: string;
  /** Absolute ws:// or wss:// URL of the socket; by default `/ws/streams` under `baseUrl` on the page's host. */
  url?: string;
  /** WebSocket implementation (tests inject a fake); the global by default. */
  WebSocket?: typeof WebSocket;
  backoff?: Partial<BackoffOptions>;
  /** How long a start/stop may wait for `accepted` or `rejected`. */
  replyTimeoutMs?: number;
}

const OPEN = 1;

interface Pending {
  resolve(reply: WsAccepted): void;
  reject(failure: StreamFailure): void;
  timer: ReturnType<typeof setTimeout>;
}

/** `/ws/streams` under `baseUrl` ('' by default), as ws:// or wss:// like the page. */
export function defaultSocketUrl(baseUrl = ''): string {
  return socketUrl(baseUrl);
}

function rejectedFailure(reply: WsRejected): StreamFailure {
  return { source: 'request', code: reply.error.code, message: reply.error.message, retryable: false, field: reply.error.field ?? null };
}

const lostBeforeReply: StreamFailure = {
  source: 'transport',
  code: 'connection_lost',
  message: 'the connection closed before the server answered',
  retryable: true,
};

/** The shared socket: subscriptions by stream id, requests awaiting their reply by request id. */
class SocketHub {
  private socket: WebSocket | null = null;
  private readonly subscriptions = new Map<string, Delivery>();
  private readonly pending = new Map<string, Pending>();
  private outbox: string[] = [];
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly url: string,
    private readonly WebSocketImpl: typeof WebSocket,
    private readonly backoff: BackoffOptions,
    private readonly replyTimeoutMs: number,
  ) {}

  /** Send `message` now or as soon as the socket opens, and wait for its reply. */
  request(message: WsClientMessage & { request_id: string }, onAccepted?: (reply: WsAccepted) => void): Promise<WsAccepted> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(message.request_id);
        reject(new StreamRequestError({ ...lostBeforeReply, code: 'reply_timeout', message: 'the server did not answer in time' }));
        this.closeIfIdle();
      }, this.replyTimeoutMs);
      this.pending.set(message.request_id, {
        resolve: (reply) => {
          onAccepted?.(reply);
          resolve(reply);
        },
        reject: (failure) => reject(new StreamRequestError(failure)),
        timer,
      });
      this.send(message);
    });
  }

  /** Follow a stream from its delivery's cursor (sent now, and again after every reconnect). */
  subscribe(streamId: string, delivery: Delivery, sendResume: boolean): void {
    this.subscriptions.set(streamId, delivery);
    // On a socket already open (a start's `accepted`, a second stream) no `onopen` will say so.
    if (this.isOpen()) delivery.connection('open');
    if (sendResume) this.sendResume(streamId, delivery);
    else this.ensureSocket();
  }

  unsubscribe(streamId: string, delivery: Delivery): void {
    if (this.subscriptions.get(streamId) === delivery) this.subscriptions.delete(streamId);
    this.closeIfIdle();
  }

  isOpen(): boolean {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  dispose(): void {
    for (const delivery of [...this.subscriptions.values()]) delivery.finish(false);
    this.subscriptions.clear();
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(lostBeforeReply);
      this.pending.delete(id);
    }
    this.shutSocket();
  }

  private sendResume(streamId: string, delivery: Delivery): void {
    if (this.isOpen()) {
      this.socket?.send(JSON.stringify({ type: 'resume', stream_id: streamId, after: delivery.cursor.lastEventId, request_id: requestId() }));
    } else {
      this.ensureSocket(); // resumes every subscription on open
    }
  }

  private send(message: WsClientMessage): void {
    const text = JSON.stringify(message);
    if (this.isOpen()) this.socket?.send(text);
    else {
      this.outbox.push(text);
      this.ensureSocket();
    }
  }

  private ensureSocket(): void {
    if (this.socket !== null || this.timer !== null) return;
    this.connect();
  }

  private connect(): void {
    const socket = new this.WebSocketImpl(this.url);
    this.socket = socket;
    const state = this.attempt === 0 ? 'connecting' : 'reconnecting';
    for (const delivery of this.subscriptions.values()) delivery.connection(state);
    socket.onopen = () => {
      if (socket !== this.socket) return;
      for (const [streamId, delivery] of this.subscriptions) {
        delivery.connection('open');
        socket.send(JSON.stringify({ type: 'resume', stream_id: streamId, after: delivery.cursor.lastEventId, request_id: requestId() }));
      }
      const outbox = this.outbox;
      this.outbox = [];
      for (const text of outbox) socket.send(text);
    };
    socket.onmessage = (message: MessageEvent) => {
      if (socket === this.socket && typeof message.data === 'string') this.route(message.data);
    };
    socket.onclose = () => {
      if (socket === this.socket) this.onClosed();
    };
  }

  private route(text: string): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if (frame.type === 'accepted' || frame.type === 'rejected') {
      this.attempt = 0;
      const reply = frame as unknown as WsAccepted | WsRejected;
      const pending = reply.request_id ? this.pending.get(reply.request_id) : undefined;
      if (pending !== undefined && reply.request_id) {
        this.pending.delete(reply.request_id);
        clearTimeout(pending.timer);
        if (reply.type === 'accepted') pending.resolve(reply);
        else pending.reject(rejectedFailure(reply));
        this.closeIfIdle();
      } else if (reply.type === 'rejected' && reply.stream_id) {
        // a resume of a stream the server no longer has
        this.subscriptions.get(reply.stream_id)?.fail({ ...rejectedFailure(reply), source: 'transport' });
      } else if (reply.type === 'accepted' && reply.caught_up) {
        // Nothing after our cursor: the stream had already ended and we hold its end (SSE's 204).
        this.subscriptions.get(reply.stream_id)?.finish(true);
      }
      return;
    }
    const event = toStreamEvent(frame.type, frame.id, frame.data, frame.stream_id);
    if (event === null || event.stream_id === undefined) return;
    this.attempt = 0;
    this.subscriptions.get(event.stream_id)?.deliver(event);
  }

  private onClosed(): void {
    this.socket = null;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(lostBeforeReply);
      this.pending.delete(id);
    }
    this.outbox = [];
    if (this.subscriptions.size === 0) return;
    this.attempt += 1;
    if (this.attempt > this.backoff.maxRetries) {
      const failure: StreamFailure = {
        source: 'transport',
        code: 'connection_lost',
        message: `lost the WebSocket connection (${this.attempt - 1} attempts to reconnect failed)`,
        retryable: true,
      };
      for (const delivery of [...this.subscriptions.values()]) delivery.fail(failure);
      this.subscriptions.clear();
      this.attempt = 0;
      return;
    }
    for (const delivery of this.subscriptions.values()) delivery.connection('reconnecting');
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.subscriptions.size > 0 || this.pending.size > 0) this.connect();
    }, backoffDelay(this.attempt - 1, this.backoff));
  }

  private closeIfIdle(): void {
    if (this.subscriptions.size === 0 && this.pending.size === 0) this.shutSocket();
  }

  private shutSocket(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.outbox = [];
    this.attempt = 0;
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      socket.close(1000, 'done');
    }
  }
}

export function createWebSocketTransport(options: WebSocketTransportOptions = {}): StreamTransport {
  const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...options.backoff };
  let hub: SocketHub | null = null;
  const getHub = (): SocketHub => {
    hub ??= new SocketHub(
      options.url ?? defaultSocketUrl(options.baseUrl),
      options.WebSocket ?? globalThis.WebSocket,
      backoff,
      options.replyTimeoutMs ?? 15_000,
    );
    return hub;
  };

  function follow(streamId: string, afterId: string | null, handlers: StreamHandlers, sendResume: boolean): StreamHandle {
    const shared = getHub();
    const delivery: Delivery = new Delivery(handlers, afterId, () => shared.unsubscribe(streamId, delivery));
    shared.subscribe(streamId, delivery, sendResume);
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
    kind: 'websocket',

    async start(request: StartRequest, handlers: StreamHandlers): Promise<StreamHandle> {
      const shared = getHub();
      const id = requestId();
      // Subscribe while handling `accepted`: the stream's events follow right behind it.
      const box: { handle: StreamHandle | null } = { handle: null };
      await shared.request(
        { type: 'start', ...startBody(request), request_id: id },
        (reply) => {
          box.handle = follow(reply.stream_id, null, handlers, false);
        },
      );
      if (box.handle === null) throw new StreamRequestError(lostBeforeReply);
      return box.handle;
    },

    resume(streamId: string, afterId: string | null, handlers: StreamHandlers): StreamHandle {
      return follow(streamId, afterId, handlers, true);
    },

    async stop(streamId: string): Promise<void> {
      const shared = getHub();
      if (shared.isOpen()) {
        try {
          await shared.request({ type: 'stop', stream_id: streamId, request_id: requestId() });
          return;
        } catch (error) {
          if (error instanceof StreamRequestError && error.failure.code === 'stream_not_found') return;
          throw error;
        }
      }
      // No socket: stopping does not need one.
      const response = await fetch(apiUrl(options.baseUrl, `/api/streams/${encodeURIComponent(streamId)}/stop`), { method: 'POST' });
      if (!response.ok && response.status !== 404) {
        throw new StreamRequestError({ source: 'request', code: `http_${response.status}`, message: 'stop failed', retryable: true });
      }
    },

    answer(streamId: string, index: number, choice: number): Promise<QuizAnswer> {
      return postQuizAnswer(streamId, index, choice, options.baseUrl); // a plain request: no socket needed
    },

    dispose(): void {
      hub?.dispose();
      hub = null;
    },
  };
  return transport;
}
