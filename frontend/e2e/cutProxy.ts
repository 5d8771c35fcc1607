/**
 * A TCP proxy in front of the test server that a test can cut: `cut()` resets
 * every open connection (SSE responses, fetch bodies, WebSockets alike), and
 * `down` refuses new ones, like a network outage. Loopback only.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface CutProxy {
  readonly url: string;
  /** The proxy's port: it relays bytes as they are, so TLS passes through (`https://127.0.0.1:${port}`). */
  readonly port: number;
  /** Reset every open connection now. */
  cut(): void;
  /** While true, new connections are reset as soon as they open. */
  down: boolean;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startCutProxy(targetPort: number): Promise<CutProxy> {
  const open = new Set<Socket>();
  let accepted = 0;
  const state = { down: false };
  const server: Server = createServer((client) => {
    accepted += 1;
    if (state.down) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    cut() {
      for (const socket of open) socket.resetAndDestroy();
      open.clear();
    },
    get down() {
      return state.down;
    },
    set down(value: boolean) {
      state.down = value;
    },
    get accepted() {
      return accepted;
    },
    close() {
      for (const socket of open) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
