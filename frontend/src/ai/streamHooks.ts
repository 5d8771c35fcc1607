/**
 * React hooks over an injected `StreamTransport`. They hold no I/O: the
 * transport (from props or `StreamTransportProvider`) does it, and the hooks
 * buffer its events and fold them with `reduce`.
 *
 * Rendering: events go into a buffer that is flushed on the next animation
 * frame, so a stream commits to React at most once per frame however fast
 * tokens arrive, and a replayed backlog or a snapshot lands in one commit.
 *
 * Accessibility (issue 17): each hook names the moment its stream is in
 * (`moment`, `announcement`: started, queued, question ready, done, stopped,
 * failed; stable across tokens) and says it once into the page's
 * `StreamAnnouncer`, if there is one; `outputProps` make the streaming output
 * a log that is not read token by token, and `blockProps` stop the stream on
 * Escape from anywhere inside the block.
 *
 * Follow-ups (issue 17): `followUp(kind, words)` starts a stream that continues the finished
 * current turn (`parent_stream_id`), through the same transport as `start`; the turn it continues
 * moves into `thread` (the block's earlier turns, as shown), and the live state is the new turn.
 * A start that continues nothing (`run(input)`: a new topic) begins a new thread.
 */
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  type ReactNode,
} from 'react';
import type { BlockOptions, BlockType, FollowUpKind, QuizAnswer, StartRequest } from './events.ts';
import { useAnnouncer } from './announcer.ts';
import { BLOCK_LABELS, momentText, streamMoment, type StreamMoment } from './moments.ts';
import { initialStreamState, reduce, type AIStreamState, type StreamAction } from './streamState.ts';
import {
  BLOCK_FOLLOW_UPS,
  FOLLOW_UP_LABELS,
  NO_TURNS,
  askOfRequest,
  askOfStart,
  threadFor,
  threadTurn,
  type ThreadTurn,
  type TurnAsk,
} from './threads.ts';
import { failureOf, type StreamHandle, type StreamHandlers, type StreamTransport } from './transport.ts';

export type { AIStreamState, StreamStatus } from './streamState.ts';
export type { ThreadTurn, TurnAsk } from './threads.ts';

/** When to flush buffered events; `animationFrames` in the browser, a manual one in tests. */
export interface FrameScheduler {
  request(callback: () => void): unknown;
  cancel(handle: unknown): void;
}

export const animationFrames: FrameScheduler = {
  request: (callback) =>
    typeof requestAnimationFrame === 'function' ? requestAnimationFrame(() => callback()) : setTimeout(callback, 16),
  cancel: (handle) => {
    if (typeof cancelAnimationFrame === 'function' && typeof handle === 'number') cancelAnimationFrame(handle);
    else clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

const TransportContext = createContext<StreamTransport | null>(null);

export function StreamTransportProvider({ transport, children }: { transport: StreamTransport; children?: ReactNode }) {
  return createElement(TransportContext.Provider, { value: transport }, children);
}

export interface UseAIStreamingOptions {
  /** Overrides the transport from `StreamTransportProvider`. */
  transport?: StreamTransport;
  frames?: FrameScheduler;
  /** The block's name in announcements ("Quiz: question 2 of 5 ready."); by default its block type's title. */
  label?: string;
  /** Say the stream's moments into the enclosing `StreamAnnouncer` (default true). */
  announce?: boolean;
}

/** Props for the element that shows the streaming output: a log that screen readers do not read token by token. */
export interface StreamOutputProps {
  role: 'log';
  'aria-live': 'off';
  /** True while the stream runs (connecting or streaming). */
  'aria-busy': boolean;
}

/** The key event `blockProps.onKeyDown` needs (a React `KeyboardEvent` is one). */
export interface StopKeyEvent {
  key: string;
  defaultPrevented: boolean;
  preventDefault(): void;
}

/** Props for the block's container: Escape inside it stops its running stream, as the Stop button does. */
export interface StreamBlockProps {
  onKeyDown(event: StopKeyEvent): void;
}

export interface AIStreaming extends AIStreamState {
  /** Start a new stream (closing any current one). */
  start(request: StartRequest): Promise<void>;
  /** Ask the server to stop generating; the text so far stays. */
  stop(): Promise<void>;
  /**
   * Answer question `index` of the quiz stream `streamId` (a turn of this block): the server's
   * verdict with the answer and why. Rejects with `StreamRequestError` (`already_answered`, ...).
   */
  answer(streamId: string, index: number, choice: number): Promise<QuizAnswer>;
  /** Continue a stream whose connection was lost, or start the last request again. */
  retry(): void;
  /** Follow a stream started elsewhere (another tab), from its beginning or a snapshot. */
  join(streamId: string): void;
  /**
   * Continue the finished current turn: a follow-up of `kind` ("simpler", "another_question", ...),
   * or (kind null) the learner's own `words`. The current turn moves into `thread`; the new one is
   * the live state. `options` default to the thread's `max_tokens`. Does nothing unless `canFollowUp`
   * (the server refuses a follow-up of a turn still streaming: `409 parent_running`).
   */
  followUp(kind: FollowUpKind | null, words?: string, options?: BlockOptions): Promise<void>;
  /** The current turn has finished (done or stopped) and has a stream id: `followUp` may be asked. */
  canFollowUp: boolean;
  /** The block's earlier turns, oldest first; the current turn is the live state. Empty for a new topic. */
  thread: readonly ThreadTurn[];
  /** What the current turn asked (its topic, a follow-up's kind or words); null while idle or not yet known. */
  asked: TurnAsk | null;
  /** The connection was lost but the stream may still be running: `retry` resumes it. */
  canContinue: boolean;
  canRetry: boolean;
  /** Connecting or streaming. */
  running: boolean;
  /** The moment the stream is in (null while idle); its `key` changes once per moment, never per token. */
  moment: StreamMoment | null;
  /** What the announcer says for `moment` ("Quiz: question 2 of 5 ready."); '' while idle. */
  announcement: string;
  /** Spread on the element showing the streaming output. */
  outputProps: StreamOutputProps;
  /** Spread on the block's container (Escape stops the stream). */
  blockProps: StreamBlockProps;
}

interface Internals {
  transport: StreamTransport;
  handle: StreamHandle | null;
  generation: number;
  buffer: StreamAction[];
  frame: unknown;
  request: StartRequest | null;
  stopRequested: boolean;
  /** What the current turn asked, and the thread before it (as in state: read by `start`). */
  asked: TurnAsk | null;
  thread: readonly ThreadTurn[];
}

export function useAIStreaming(options: UseAIStreamingOptions = {}): AIStreaming {
  const fromContext = useContext(TransportContext);
  const transport = options.transport ?? fromContext;
  if (transport === null) throw new Error('useAIStreaming needs a transport: pass one or wrap in <StreamTransportProvider>');
  const frames = options.frames ?? animationFrames;

  const [state, setState] = useState<AIStreamState>(initialStreamState);
  const stateRef = useRef(state);
  useLayoutEffect(() => {
    stateRef.current = state;
  });
  const framesRef = useRef(frames);
  framesRef.current = frames;
  const r = useRef<Internals>({
    transport,
    handle: null,
    generation: 0,
    buffer: [],
    frame: null,
    request: null,
    stopRequested: false,
    asked: null,
    thread: NO_TURNS,
  }).current;
  const [turns, setTurns] = useState<{ asked: TurnAsk | null; thread: readonly ThreadTurn[] }>({ asked: null, thread: NO_TURNS });
  const setThread = useCallback(
    (asked: TurnAsk | null, thread: readonly ThreadTurn[]) => {
      r.asked = asked;
      r.thread = thread;
      setTurns({ asked, thread });
    },
    [r],
  );

  const flush = useCallback(() => {
    r.frame = null;
    const batch = r.buffer;
    r.buffer = [];
    if (batch.length > 0) setState((current) => reduce(current, batch));
  }, [r]);

  const enqueue = useCallback(
    (generation: number, action: StreamAction) => {
      if (generation !== r.generation) return;
      r.buffer.push(action);
      if (r.frame === null) r.frame = framesRef.current.request(flush);
    },
    [r, flush],
  );

  const handlersFor = useCallback(
    (generation: number): StreamHandlers => ({
      onEvent: (event) => enqueue(generation, { kind: 'event', event }),
      onError: (failure) => enqueue(generation, { kind: 'failure', failure }),
      onConnection: (connection) => enqueue(generation, { kind: 'connection', state: connection }),
      onComplete: () => {
        if (generation === r.generation) r.handle = null;
      },
    }),
    [r, enqueue],
  );

  /** Stop reading the current stream and drop what it buffered: a new one replaces it. */
  const detach = useCallback(() => {
    r.generation += 1;
    r.handle?.close();
    r.handle = null;
    r.buffer = [];
    r.stopRequested = false;
    if (r.frame !== null) framesRef.current.cancel(r.frame);
    r.frame = null;
  }, [r]);

  const follow = useCallback(
    (streamId: string, afterId: string | null) => {
      const generation = r.generation;
      const handle = r.transport.resume(streamId, afterId, handlersFor(generation));
      r.handle = handle.closed ? null : handle;
    },
    [r, handlersFor],
  );

  const start = useCallback(
    async (request: StartRequest) => {
      // the turn on screen, with what it buffered: kept in the thread when this start follows it up
      const shown = r.buffer.length > 0 ? reduce(stateRef.current, r.buffer) : stateRef.current;
      const current = shown.streamId !== null ? threadTurn(shown, r.asked ?? askOf(shown) ?? UNKNOWN_ASK, shown.streamId) : null;
      setThread(askOfRequest(request), threadFor(r.thread, current, request.parent_stream_id ?? null));
      detach();
      const generation = r.generation;
      r.request = request;
      setState({ ...initialStreamState, status: 'connecting', blockType: request.block_type, connection: 'connecting' });
      try {
        const handle = await r.transport.start(request, handlersFor(generation));
        if (generation !== r.generation) {
          handle.close();
          return;
        }
        r.handle = handle.closed ? null : handle;
        enqueue(generation, { kind: 'attached', streamId: handle.streamId });
        if (r.stopRequested && r.handle) await r.handle.stop();
      } catch (error) {
        enqueue(generation, { kind: 'failure', failure: failureOf(error) });
      }
    },
    [r, detach, handlersFor, enqueue, setThread],
  );

  const answer = useCallback(
    (streamId: string, index: number, choice: number) => r.transport.answer(streamId, index, choice),
    [r],
  );

  const stop = useCallback(async () => {
    const handle = r.handle;
    if (handle === null) {
      r.stopRequested = true; // still starting: stop once the stream has an id
      return;
    }
    try {
      await handle.stop();
    } catch (error) {
      enqueue(r.generation, { kind: 'failure', failure: failureOf(error) });
    }
  }, [r, enqueue]);

  const join = useCallback(
    (streamId: string) => {
      detach();
      setThread(null, NO_TURNS);
      r.request = null;
      setState({ ...initialStreamState, status: 'connecting', streamId, connection: 'connecting' });
      follow(streamId, null);
    },
    [r, detach, follow, setThread],
  );

  const retry = useCallback(() => {
    const current = stateRef.current;
    if (resumable(current)) {
      detach();
      enqueue(r.generation, { kind: 'resuming' });
      follow(current.streamId as string, current.lastEventId);
    } else if (r.request !== null) {
      void start(r.request);
    } else if (current.streamId !== null) {
      join(current.streamId);
    }
  }, [r, detach, enqueue, follow, start, join]);

  const canFollowUp = state.status === 'done' && state.streamId !== null;
  const followUp = useCallback(
    async (kind: FollowUpKind | null, words?: string, blockOptions?: BlockOptions) => {
      const current = stateRef.current;
      const blockType = current.blockType ?? r.request?.block_type ?? null;
      if (current.status !== 'done' || current.streamId === null || blockType === null) return;
      const input = (words ?? '').trim();
      if (kind === null && input === '') return; // own words: there must be some
      const maxTokens = r.request?.options?.max_tokens;
      const options = blockOptions ?? (maxTokens ? { max_tokens: maxTokens } : undefined);
      const request: StartRequest = { block_type: blockType, input, parent_stream_id: current.streamId, follow_up: kind };
      await start(options ? { ...request, options } : request);
    },
    [r, start],
  );

  // Switching transport mid-stream: resume on the new one from the same cursor.
  useEffect(() => {
    if (r.transport === transport) return;
    r.transport = transport;
    const old = r.handle;
    if (old === null || old.closed) return;
    const { streamId, lastEventId } = old;
    old.close();
    r.generation += 1; // events already buffered stay and are flushed
    follow(streamId, lastEventId);
  }, [r, transport, follow]);

  // Unmount: close the connection and drop the pending frame.
  useEffect(() => () => detach(), [detach]);

  const running = state.status === 'connecting' || state.status === 'streaming';
  const total = state.blockType === 'quiz' ? (r.request?.options?.num_questions ?? null) : null;
  // a quiz's follow-up numbers on: its first question is said as question 4 after 3
  const offset = state.blockType === 'quiz' ? turns.thread.reduce((sum, turn) => sum + turn.questions.length, 0) : 0;
  const moment = streamMoment(state, total, offset);
  const momentKey = moment?.key ?? null;
  const asked = turns.asked ?? askOf(state);
  const blockLabel = options.label ?? (state.blockType ? BLOCK_LABELS[state.blockType] : 'Answer');
  // a follow-up's moments name it: "Ask a question (Simpler): done."
  const label =
    asked?.parentStreamId != null ? `${blockLabel} (${asked.followUp !== null ? FOLLOW_UP_LABELS[asked.followUp] : 'follow-up'})` : blockLabel;
  // the same object for as long as the moment lasts: tokens do not change it
  const stableMoment = useMemo(() => moment, [momentKey, total]);
  const announcement = useMemo(() => momentText(label, stableMoment), [label, stableMoment]);

  // Said once per moment: a label that changes mid-moment (a joined stream's block type arriving) is not said again.
  const announcer = useAnnouncer();
  const announcing = options.announce !== false;
  const labelRef = useRef(label);
  labelRef.current = label;
  useEffect(() => {
    if (announcing && announcer !== null && stableMoment !== null) announcer.announce(momentText(labelRef.current, stableMoment));
  }, [announcing, announcer, stableMoment]);

  const outputProps = useMemo<StreamOutputProps>(() => ({ role: 'log', 'aria-live': 'off', 'aria-busy': running }), [running]);
  const blockProps = useMemo<StreamBlockProps>(
    () => ({
      onKeyDown(event) {
        if (event.key !== 'Escape' || event.defaultPrevented || !running) return;
        event.preventDefault();
        void stop();
      },
    }),
    [running, stop],
  );

  return {
    ...state,
    start,
    stop,
    answer,
    retry,
    join,
    followUp,
    canFollowUp,
    thread: turns.thread,
    asked,
    canContinue: resumable(state),
    canRetry: retriable(state) && (r.request !== null || state.streamId !== null),
    running,
    moment: stableMoment,
    announcement,
    outputProps,
    blockProps,
  };
}

const UNKNOWN_ASK: TurnAsk = { input: '', parentStreamId: null, followUp: null };

/** What a turn without a request of ours (a joined stream) asked, once its `start` is known. */
function askOf(state: AIStreamState): TurnAsk | null {
  return state.meta !== null ? askOfStart(state.meta) : null;
}

/** Failed, stopped or cut short: worth another go. A complete answer is not offered one. */
function retriable(state: AIStreamState): boolean {
  return state.status === 'error' || (state.status === 'done' && state.outcome !== 'complete');
}

function resumable(state: AIStreamState): boolean {
  return state.status === 'error' && state.outcome === null && state.streamId !== null && state.error?.source === 'transport' && state.error.retryable;
}

export interface AIBlockStreaming extends AIStreaming {
  blockType: BlockType;
  /** Start this block for `input`. */
  run(input: string, options?: BlockOptions): Promise<void>;
  /** Mermaid source (diagram block); '' for the others. An earlier turn's is its `text`. */
  source: string;
  /** The follow-up kinds this block offers (`BLOCK_FOLLOW_UPS`), for `followUp(kind)`. */
  followUps: readonly FollowUpKind[];
}

/** `useAIStreaming` for one block: `text` for ask/ELI10, `questions` for a quiz, `source` for a diagram. */
export function useAIBlockStreaming(blockType: BlockType, options: UseAIStreamingOptions = {}): AIBlockStreaming {
  const streaming = useAIStreaming({ ...options, label: options.label ?? BLOCK_LABELS[blockType] });
  const { start } = streaming;
  const run = useCallback(
    (input: string, blockOptions?: BlockOptions) =>
      start(blockOptions ? { block_type: blockType, input, options: blockOptions } : { block_type: blockType, input }),
    [start, blockType],
  );
  return { ...streaming, blockType, run, source: blockType === 'diagram' ? streaming.text : '', followUps: BLOCK_FOLLOW_UPS[blockType] };
}
