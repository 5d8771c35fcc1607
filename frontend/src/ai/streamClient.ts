/**
 * The stream client: one typed event model over two transports.
 *
 * - `events.ts`       the wire types (checked against contracts/stream-schema.yaml)
 * - `transport.ts`    the `StreamTransport` interface, id de-duplication, backoff
 * - `sseTransport.ts` SSE: EventSource or fetch + eventsource-parser, `?after=` reconnects
 * - `wsTransport.ts`  WebSocket: one counted socket, `resume` after reconnect
 *
 * Hooks (`streamHooks.ts`) receive a transport and never do I/O themselves.
 */
import { createSSETransport, type SSETransportOptions } from './sseTransport.ts';
import type { StreamTransport, TransportKind } from './transport.ts';
import { createWebSocketTransport, type WebSocketTransportOptions } from './wsTransport.ts';

export * from './events.ts';
export * from './transport.ts';
export { createSSETransport, withAfter, type SSETransportOptions } from './sseTransport.ts';
export { createWebSocketTransport, type WebSocketTransportOptions } from './wsTransport.ts';

export const TRANSPORT_LABELS: Record<TransportKind, string> = {
  sse: 'SSE',
  'sse-fetch': 'SSE (fetch)',
  websocket: 'WebSocket',
};

export interface CreateTransportOptions {
  /**
   * Where the host mounted our routes: '' (default: `/api/streams`, `/ws/streams` on the page's origin),
   * a path such as `/ai` (`/ai/api/streams`, `/ai/ws/streams`), or an absolute URL `https://api.example.com/ai`.
   * `sse.baseUrl` / `websocket.baseUrl` / `websocket.url` win over it.
   */
  baseUrl?: string;
  sse?: SSETransportOptions;
  websocket?: WebSocketTransportOptions;
}

export function createTransport(kind: TransportKind, options: CreateTransportOptions = {}): StreamTransport {
  const baseUrl = options.baseUrl ?? '';
  switch (kind) {
    case 'sse':
      return createSSETransport({ baseUrl, ...options.sse, reader: 'eventsource' });
    case 'sse-fetch':
      return createSSETransport({ baseUrl, ...options.sse, reader: 'fetch' });
    case 'websocket':
      return createWebSocketTransport({ baseUrl, ...options.websocket });
  }
}
