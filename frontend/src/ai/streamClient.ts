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

export function createTransport(
  kind: TransportKind,
  options: { sse?: SSETransportOptions; websocket?: WebSocketTransportOptions } = {},
): StreamTransport {
  switch (kind) {
    case 'sse':
      return createSSETransport({ ...options.sse, reader: 'eventsource' });
    case 'sse-fetch':
      return createSSETransport({ ...options.sse, reader: 'fetch' });
    case 'websocket':
      return createWebSocketTransport(options.websocket);
  }
}
