/** Handlers that record every callback a transport makes, for transport tests. */
import type { StreamEvent, TerminalEvent } from '../events.ts';
import type { ConnectionState, StreamFailure, StreamHandlers } from '../transport.ts';

export interface Collected {
  handlers: StreamHandlers;
  events: StreamEvent[];
  chunks: string[];
  errors: StreamFailure[];
  completions: TerminalEvent[];
  connections: ConnectionState[];
  /** Every callback, in the order they came: `event`, `chunk`, `error`, `complete` or the connection state. */
  calls: string[];
  /** The text of every `onChunk`, joined. */
  text(): string;
  /** The last `onComplete`, or null. */
  completed(): TerminalEvent | null;
  /** The connection state when each event arrived (null before the first `onConnection`). */
  stateAtEvent: (ConnectionState | null)[];
  /** Settles with the terminal event, or with a failure that is not a terminal `error` event. */
  ended: Promise<TerminalEvent | StreamFailure>;
}

export function collect(): Collected {
  const events: StreamEvent[] = [];
  const chunks: string[] = [];
  const errors: StreamFailure[] = [];
  const completions: TerminalEvent[] = [];
  const connections: ConnectionState[] = [];
  const stateAtEvent: (ConnectionState | null)[] = [];
  const calls: string[] = [];
  let resolveEnd!: (value: TerminalEvent | StreamFailure) => void;
  const ended = new Promise<TerminalEvent | StreamFailure>((resolve) => (resolveEnd = resolve));
  const handlers: StreamHandlers = {
    onEvent: (event) => {
      calls.push('event');
      events.push(event);
      stateAtEvent.push(connections.at(-1) ?? null);
    },
    onChunk: (text) => {
      calls.push('chunk');
      chunks.push(text);
    },
    onError: (failure) => {
      calls.push('error');
      errors.push(failure);
      if (failure.source !== 'stream') resolveEnd(failure);
    },
    onComplete: (event) => {
      calls.push('complete');
      completions.push(event);
      resolveEnd(event);
    },
    onConnection: (state) => {
      calls.push(state);
      connections.push(state);
    },
  };
  return {
    handlers,
    events,
    chunks,
    errors,
    completions,
    connections,
    calls,
    stateAtEvent,
    ended,
    text: () => chunks.join(''),
    completed: () => completions.at(-1) ?? null,
  };
}
