import { createContext, useContext } from 'react';
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

/** Status, token count, provider, and the stop / retry / share controls of one block. */
export function StreamStatusBar({ stream, countLabel = 'tokens', count }: Props) {
  const running = stream.status === 'connecting' || stream.status === 'streaming';
  const shown = count ?? stream.outputTokens;
  const shareLink = useContext(ShareLinkContext);
  const shareHref = stream.streamId ? shareLink(stream.streamId) : null;
  return (
    <div className="status-bar">
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
      <span className="spacer" />
      {running ? (
        <button type="button" className="secondary" onClick={() => void stream.stop()}>
          Stop
        </button>
      ) : null}
      {stream.canRetry ? (
        <button type="button" className="secondary" onClick={() => stream.retry()}>
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

/** The error or notice under a block, if any. */
export function StreamMessages({ stream }: { stream: AIStreaming }) {
  return (
    <>
      {stream.notice ? <p className="notice">{stream.notice}</p> : null}
      {stream.error ? (
        <p className="error" role="alert">
          {stream.canContinue ? 'The connection was lost; the answer so far is kept. ' : null}
          {stream.error.message}
          {stream.error.code ? <code className="error-code"> ({stream.error.code})</code> : null}
        </p>
      ) : null}
      {stream.outcome === 'stopped' ? <p className="notice">Stopped. The text so far is kept; Retry asks again.</p> : null}
    </>
  );
}
