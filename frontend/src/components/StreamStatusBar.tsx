import { createContext, useContext, useLayoutEffect, useRef } from 'react';
import type { AIStreaming } from '../ai/streamHooks.ts';

/** The "Open in new tab" link of a running stream; null hides it. */
export type ShareLink = (streamId: string) => string | null;

/** The served page follows `?stream=<id>` (a host page passes its own through `AIBlocksProvider`). */
export const defaultShareLink: ShareLink = (streamId) => `?stream=${encodeURIComponent(streamId)}`;

export const ShareLinkContext = createContext<ShareLink>(defaultShareLink);

const OUTCOME_LABEL: Record<string, string> = {
  complete: 'Done',
  stopped: 'Stopped',
  interrupted: 'Interrupted',
  failed: 'Failed',
};

export function statusLabel(stream: AIStreaming): string {
  if (stream.status === 'connecting') return 'Connecting…';
  if (stream.status === 'streaming') {
    if (stream.connection === 'reconnecting') return 'Reconnecting…';
    if (stream.queuePosition !== null) return `Waiting for the model (#${stream.queuePosition})`;
    return 'Streaming';
  }
  if (stream.status === 'done') return OUTCOME_LABEL[stream.outcome ?? 'complete'] ?? 'Done';
  if (stream.status === 'error') {
    if (stream.canContinue) return 'Connection lost';
    return stream.outcome ? (OUTCOME_LABEL[stream.outcome] ?? 'Error') : 'Error';
  }
  return 'Ready';
}

interface Props {
  stream: AIStreaming;
  /** What the count counts: "tokens", or "questions" for a quiz. */
  countLabel?: string;
  count?: number;
}

/**
 * Status, token count, provider, and the stop / retry / share controls of one block.
 * When the stream ends with focus on the Stop button (clicked, or Escape), the button goes and focus
 * moves to Retry, or else to the block's first follow-up or its submit button, rather than to the page's top.
 * A stream that reads a generation shared with identical requests says so: "shared with your class" while
 * it was running for someone else, "from a moment ago" when it had completed and is replayed.
 */
export function StreamStatusBar({ stream, countLabel = 'tokens', count }: Props) {
  const running = stream.status === 'connecting' || stream.status === 'streaming';
  const shown = count ?? stream.outputTokens;
  const shareLink = useContext(ShareLinkContext);
  const shareHref = stream.streamId ? shareLink(stream.streamId) : null;
  const bar = useRef<HTMLDivElement>(null);
  const stopFocused = useRef(false);
  useLayoutEffect(() => {
    if (running || !stopFocused.current) return;
    stopFocused.current = false;
    const active = document.activeElement;
    if (active !== null && active !== document.body) return; // focus went somewhere on purpose
    const retry = bar.current?.querySelector<HTMLButtonElement>('button[data-action="retry"]');
    const section = bar.current?.closest('.aib-block');
    const followUp = section?.querySelector<HTMLButtonElement>('button[data-action="follow-up"]');
    const submit = section?.querySelector<HTMLButtonElement>('button[type="submit"]:not(:disabled)');
    (retry ?? followUp ?? submit)?.focus();
  }, [running]);
  return (
    <div className="status-bar" ref={bar}>
      <span className={`badge badge-${stream.status}`} data-testid="status" data-status={stream.status}>
        {statusLabel(stream)}
      </span>
      <span className="count" data-testid="count">
        {shown} {countLabel}
      </span>
      {stream.meta ? (
        <span className="model" title={stream.meta.notice ?? undefined}>
          {stream.meta.provider} · {stream.meta.model}
          {stream.meta.scripted ? <span className="badge badge-scripted">scripted</span> : null}
        </span>
      ) : null}
      {stream.meta?.shared ? (
        <span
          className="badge badge-shared"
          data-testid="shared-note"
          data-cached={stream.meta.cached ? 'true' : 'false'}
          title="The same request was asked a moment before: this answer is read from the same generation"
        >
          {stream.meta.cached ? 'from a moment ago' : 'shared with your class'}
        </span>
      ) : null}
      <span className="spacer" />
      {running ? (
        <button
          type="button"
          className="secondary"
          aria-keyshortcuts="Escape"
          title="Stop (Esc)"
          onFocus={() => (stopFocused.current = true)}
          onBlur={(event) => {
            // a removed button's blur has no related target: that one is the focus to put back
            if (event.relatedTarget !== null) stopFocused.current = false;
          }}
          onClick={() => void stream.stop()}
        >
          Stop
        </button>
      ) : null}
      {stream.canRetry ? (
        <button type="button" className="secondary" data-action="retry" onClick={() => stream.retry()}>
          {stream.canContinue ? 'Continue' : 'Retry'}
        </button>
      ) : null}
      {running && shareHref ? (
        <a className="share" href={shareHref} target="_blank" rel="noopener" title="Follow this answer in another tab">
          Open in new tab
        </a>
      ) : null}
    </div>
  );
}

/** The error or notice under a block, if any (the page's announcer says a failure: this one is not a live region). */
export function StreamMessages({ stream }: { stream: AIStreaming }) {
  return (
    <>
      {stream.notice ? <p className="notice">{stream.notice}</p> : null}
      {stream.error ? (
        <p className="error" data-testid="stream-error">
          {stream.canContinue ? 'The connection was lost; the answer so far is kept. ' : null}
          {stream.error.code === 'parent_running'
            ? 'The answer before this one is still being written, so it cannot be followed up yet: wait for it to finish (or stop it), then press Retry.'
            : stream.error.message}
          {stream.error.code ? <code className="error-code"> ({stream.error.code})</code> : null}
        </p>
      ) : null}
      {stream.outcome === 'stopped' ? <p className="notice">Stopped. The text so far is kept; Retry asks again.</p> : null}
    </>
  );
}
