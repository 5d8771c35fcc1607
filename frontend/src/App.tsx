import { useCallback, useEffect, useMemo, useState, type FormEvent } from 'react';
import { fetchStreamStatus } from './ai/api.ts';
import { BLOCK_TYPES, type BlockType } from './ai/events.ts';
import { TRANSPORT_LABELS, createTransport } from './ai/streamClient.ts';
import { StreamAnnouncer } from './ai/announcer.ts';
import { StreamTransportProvider } from './ai/streamHooks.ts';
import { failureOf, type StreamTransport, type TransportKind } from './ai/transport.ts';
import { AskQuestionBlock } from './components/AskQuestionBlock.tsx';
import { DiagramBlock } from './components/DiagramBlock.tsx';
import { ExplainELI10Block } from './components/ExplainELI10Block.tsx';
import { QuizBlock } from './components/QuizBlock.tsx';
import type { JoinRequest } from './components/TextAnswerBlock.tsx';

const TOPIC = 'Photosynthesis';
const KINDS: TransportKind[] = ['sse', 'sse-fetch', 'websocket'];

function isKind(value: string | null): value is TransportKind {
  return value !== null && (KINDS as string[]).includes(value);
}

function isBlockType(value: string): value is BlockType {
  return (BLOCK_TYPES as readonly string[]).includes(value);
}

function setQueryParam(name: string, value: string | null): void {
  const url = new URL(window.location.href);
  if (value === null) url.searchParams.delete(name);
  else url.searchParams.set(name, value);
  window.history.replaceState(null, '', url);
}

export interface AppProps {
  /** Builds the transport of a kind (tests inject fakes). */
  makeTransport?: (kind: TransportKind) => StreamTransport;
}

export function App({ makeTransport = createTransport }: AppProps) {
  const params = useMemo(() => new URLSearchParams(window.location.search), []);
  const [kind, setKind] = useState<TransportKind>(() => {
    const fromUrl = params.get('transport');
    return isKind(fromUrl) ? fromUrl : 'sse';
  });
  const transports = useMemo(() => new Map<TransportKind, StreamTransport>(), []);
  let transport = transports.get(kind);
  if (transport === undefined) {
    transport = makeTransport(kind);
    transports.set(kind, transport);
  }
  useEffect(() => () => transports.forEach((t) => t.dispose?.()), [transports]);

  const [joins, setJoins] = useState<Partial<Record<BlockType, JoinRequest>>>({});
  const [joinInput, setJoinInput] = useState(params.get('stream') ?? '');
  const [joinMessage, setJoinMessage] = useState<string | null>(null);

  const join = useCallback(async (streamId: string) => {
    setJoinMessage(null);
    try {
      const status = await fetchStreamStatus(streamId);
      if (!isBlockType(status.block_type)) throw new Error(`unknown block type ${status.block_type}`);
      const blockType = status.block_type;
      setJoins((current) => ({ ...current, [blockType]: { streamId, nonce: Date.now() } }));
      setJoinMessage(`Following stream ${streamId} (${status.status}).`);
    } catch (error) {
      setJoinMessage(`Cannot join ${streamId}: ${failureOf(error).message}`);
    }
  }, []);

  useEffect(() => {
    const streamId = params.get('stream');
    if (streamId) void join(streamId);
  }, [params, join]);

  const chooseKind = (next: TransportKind) => {
    setKind(next);
    setQueryParam('transport', next === 'sse' ? null : next);
  };

  const submitJoin = (event: FormEvent) => {
    event.preventDefault();
    const streamId = joinInput.trim();
    if (streamId) void join(streamId);
  };

  return (
    <StreamTransportProvider transport={transport}>
      <StreamAnnouncer>
        <header className="page-header aib-scope">
          <div>
            <p className="eyebrow">Lesson</p>
            <h1>{TOPIC}</h1>
            <p className="lead">How plants turn sunlight, water and air into sugar, with four AI helpers that answer as they think.</p>
          </div>
          <div className="controls">
            <fieldset className="transport-switch">
              <legend>Transport</legend>
              {KINDS.map((k) => (
                <label key={k}>
                  <input type="radio" name="transport" value={k} checked={kind === k} onChange={() => chooseKind(k)} />
                  {TRANSPORT_LABELS[k]}
                </label>
              ))}
            </fieldset>
            <form className="join-form" onSubmit={submitJoin}>
              <label htmlFor="join-stream">Join a running stream</label>
              <div className="input-row">
                <input
                  id="join-stream"
                  value={joinInput}
                  onChange={(e) => setJoinInput(e.target.value)}
                  placeholder="stream id"
                  spellCheck={false}
                />
                <button type="submit" className="secondary" disabled={!joinInput.trim()}>
                  Join
                </button>
              </div>
              {joinMessage ? (
                <p className="join-message" role="status">
                  {joinMessage}
                </p>
              ) : null}
            </form>
          </div>
        </header>
        <main className="blocks">
          <AskQuestionBlock topic={TOPIC} join={joins.ask_question ?? null} />
          <ExplainELI10Block topic={TOPIC} join={joins.explain_eli10 ?? null} />
          <QuizBlock topic={TOPIC} join={joins.quiz ?? null} />
          <DiagramBlock topic={TOPIC} join={joins.diagram ?? null} />
        </main>
        <footer className="page-footer">
          Answers stream over {TRANSPORT_LABELS[kind]}; switching transport mid-answer resumes from the same event.
        </footer>
      </StreamAnnouncer>
    </StreamTransportProvider>
  );
}
