import { useEffect, useMemo, type ReactNode } from 'react';
import { StreamAnnouncer } from '../ai/announcer.ts';
import { createTransport, type CreateTransportOptions } from '../ai/streamClient.ts';
import { StreamTransportProvider } from '../ai/streamHooks.ts';
import type { StreamTransport, TransportKind } from '../ai/transport.ts';
import { ShareLinkContext, defaultShareLink, type ShareLink } from './StreamStatusBar.tsx';

export interface AIBlocksProviderProps {
  /** Where the host mounted our routes: '' (default, the page's origin), `/ai`, or `https://api.example.com/ai`. */
  baseUrl?: string;
  /** How the blocks read their streams: 'sse' (default, EventSource), 'sse-fetch' or 'websocket'. */
  transport?: TransportKind;
  /** More transport settings (backoff, timeouts, fetch/EventSource/WebSocket implementations). */
  transportOptions?: Omit<CreateTransportOptions, 'baseUrl'>;
  /** The "Open in new tab" link of a running block (`?stream=<id>` by default); return null to hide it. */
  shareLink?: ShareLink;
  /**
   * Render the page's polite announcer (a visually hidden `aria-live="polite"` region, `StreamAnnouncer`) that
   * says each block's moments: started, queued, question ready, done, stopped, failed. Default true; one
   * already above (another provider, or your own `StreamAnnouncer`) is used instead of a second one.
   */
  announcer?: boolean;
  children?: ReactNode;
}

/**
 * Gives every block and `useAIStreaming` / `useAIBlockStreaming` below it a transport to our routes
 * under `baseUrl`, made once per (transport, baseUrl) and disposed on change or unmount.
 * To inject a transport of your own, use `StreamTransportProvider` instead.
 */
export function AIBlocksProvider({
  baseUrl = '',
  transport = 'sse',
  transportOptions,
  shareLink = defaultShareLink,
  announcer = true,
  children,
}: AIBlocksProviderProps) {
  // transportOptions is read when the transport is made: change baseUrl or transport to make a new one.
  const made: StreamTransport = useMemo(() => createTransport(transport, { ...transportOptions, baseUrl }), [transport, baseUrl]);
  useEffect(() => () => made.dispose?.(), [made]);
  return (
    <ShareLinkContext.Provider value={shareLink}>
      <StreamTransportProvider transport={made}>{announcer ? <StreamAnnouncer>{children}</StreamAnnouncer> : children}</StreamTransportProvider>
    </ShareLinkContext.Provider>
  );
}
