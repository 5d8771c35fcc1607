/**
 * AIBlocksProvider, what a host app wraps the blocks in: the transport it makes goes to `<baseUrl>/api/...`,
 * the host's share link replaces `?stream=<id>` (or hides it), and the transport is disposed on unmount.
 */
import { render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { AIBlocksProvider } from './AIBlocksProvider.tsx';
import { QuizBlock } from './QuizBlock.tsx';

function serverFetch() {
  const calls: string[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL) => {
    const url = String(input);
    calls.push(url);
    if (url.endsWith('/api/streams')) return Response.json({ stream_id: 's1', events_url: '/ai/api/streams/s1/events' }, { status: 201 });
    return new Response(new ReadableStream(), { status: 200, headers: { 'content-type': 'text/event-stream' } });
  });
  return { calls, fetch: fetch as unknown as typeof globalThis.fetch };
}

describe('AIBlocksProvider', () => {
  it.each([
    [undefined, '?stream=s1'],
    [(id: string) => `/lessons/7?follow=${id}`, '/lessons/7?follow=s1'],
    [() => null, null],
  ])('streams from <baseUrl>/api and links a running block with the share link (%#)', async (shareLink, href) => {
    const { calls, fetch } = serverFetch();
    const user = userEvent.setup();
    const { unmount } = render(
      <AIBlocksProvider baseUrl="/ai" transport="sse-fetch" transportOptions={{ sse: { fetch } }} {...(shareLink ? { shareLink } : {})}>
        <QuizBlock topic="Photosynthesis" />
      </AIBlocksProvider>,
    );
    await user.click(screen.getByRole('button', { name: 'Make quiz' }));
    await waitFor(() => expect(calls).toEqual(['/ai/api/streams', '/ai/api/streams/s1/events']));
    await waitFor(() => expect(screen.getByTestId('status')).toHaveTextContent('Connecting…'));
    const shareHref = () => screen.queryByRole('link', { name: 'Open in new tab' })?.getAttribute('href') ?? null;
    if (href === null) await new Promise((resolve) => setTimeout(resolve, 100)); // the stream id has been attached
    await waitFor(() => expect(shareHref()).toBe(href));
    unmount();
  });
});
