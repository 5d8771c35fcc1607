/**
 * `@quart-ai-blocks/react`: the public surface of the package (built by
 * `npm run build:package` from this file; the page we serve ourselves starts
 * at `main.tsx` and does not import it). Everything a host app may use is
 * named here; anything else in `src/` is internal and may change.
 */

// -- the four blocks and their parts -------------------------------------------
export { AIBlocksProvider, type AIBlocksProviderProps } from './components/AIBlocksProvider.tsx';
export { AskQuestionBlock } from './components/AskQuestionBlock.tsx';
export { ExplainELI10Block } from './components/ExplainELI10Block.tsx';
export { QuizBlock } from './components/QuizBlock.tsx';
export { DiagramBlock } from './components/DiagramBlock.tsx';
export { TextAnswerBlock, type BlockProps, type JoinRequest, type TextAnswerBlockProps } from './components/TextAnswerBlock.tsx';
export { StreamStatusBar, StreamMessages, statusLabel, defaultShareLink, type ShareLink } from './components/StreamStatusBar.tsx';
export { StreamingMarkdown, safeUrl } from './components/StreamingMarkdown.tsx';
export { FollowUps, TurnHeading, askedLabel, type FollowUpsProps } from './components/FollowUps.tsx';

// -- hooks -----------------------------------------------------------------------
export {
  useAIStreaming,
  useAIBlockStreaming,
  StreamTransportProvider,
  animationFrames,
  type AIStreaming,
  type AIBlockStreaming,
  type UseAIStreamingOptions,
  type FrameScheduler,
  type StreamOutputProps,
  type StreamBlockProps,
  type StopKeyEvent,
} from './ai/streamHooks.ts';

// -- follow-ups: a block's thread of turns ------------------------------------------
export {
  BLOCK_FOLLOW_UPS,
  FOLLOW_UP_LABELS,
  OWN_WORDS_FOLLOW_UPS,
  turnLabel,
  type ThreadTurn,
  type TurnAsk,
} from './ai/threads.ts';

// -- accessibility: the page's announcer and the moments it says ------------------
export { StreamAnnouncer, useAnnounce, useAnnouncer, ANNOUNCER_HISTORY, type Announcer, type StreamAnnouncerProps } from './ai/announcer.ts';
export { streamMoment, momentText, BLOCK_LABELS, type StreamMoment, type StreamMomentKind } from './ai/moments.ts';
export {
  reduce,
  initialStreamState,
  MAX_EVENTS,
  type AIStreamState,
  type StreamAction,
  type StreamStatus as AIStreamStatus,
} from './ai/streamState.ts';

// -- the stream client -----------------------------------------------------------
export { createTransport, TRANSPORT_LABELS, type CreateTransportOptions } from './ai/streamClient.ts';
export { createSSETransport, withAfter, type SSETransportOptions } from './ai/sseTransport.ts';
export { createWebSocketTransport, defaultSocketUrl, type WebSocketTransportOptions } from './ai/wsTransport.ts';
export { fetchStreamStatus } from './ai/api.ts';
export {
  StreamRequestError,
  EventCursor,
  Delivery,
  DEFAULT_BACKOFF,
  backoffDelay,
  failureOf,
  failureFromResponse,
  type TransportKind,
  type ConnectionState,
  type StreamFailure,
  type StreamHandlers,
  type StreamHandle,
  type StreamTransport,
  type BackoffOptions,
} from './ai/transport.ts';

// -- the wire types (contracts/stream-schema.yaml) -------------------------------
export {
  BLOCK_TYPES,
  END_STATUSES,
  RESET_REASONS,
  EVENT_TYPES,
  isEventType,
  isTerminal,
  replacesState,
  parseEventId,
  toStreamEvent,
  parseSSEMessage,
  type BlockType,
  type EndStatus,
  type ResetReason,
  type Usage,
  type QuizQuestion,
  type DiagramCheck,
  type BlockResult,
  type StartData,
  type QueuedData,
  type TokenData,
  type QuizQuestionData,
  type DiagramPartialData,
  type SnapshotData,
  type ResetData,
  type DoneData,
  type ErrorData,
  type ShutdownData,
  type EventDataMap,
  type EventType,
  type StreamEventOf,
  type StreamEvent,
  type TerminalEvent,
  type BlockOptions,
  type FollowUpKind,
  type StartRequest,
  type StreamCreated,
  type StreamStatus,
  type ErrorDetail,
  type WsStart,
  type WsResume,
  type WsStop,
  type WsClientMessage,
  type WsAccepted,
  type WsRejected,
} from './ai/events.ts';
