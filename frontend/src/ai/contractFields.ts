/**
 * Runtime copies of the field names of every wire type in `events.ts`.
 *
 * Types vanish at run time, so the contract test cannot compare them with
 * contracts/stream-schema.yaml directly. These lists stand in for them, and the
 * `Exact` checks at the bottom make `tsc` fail when a list and its type differ:
 * a field added to a type must be added here, and then the test compares it
 * with the schema.
 */
import type {
  BlockOptions,
  BlockResult,
  DiagramCheck,
  DiagramPartialData,
  DoneData,
  ErrorData,
  ErrorDetail,
  QueuedData,
  QuizItem,
  QuizQuestionData,
  ResetData,
  ShutdownData,
  SnapshotData,
  StartData,
  TokenData,
  Usage,
  WsAccepted,
  WsRejected,
  WsResume,
  EventDataMap,
  EventType,
  WsStart,
  WsStop,
} from './events.ts';

type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T] & string;
type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T] & string;

interface Fields {
  readonly required: readonly string[];
  readonly optional: readonly string[];
}

/** Schema name in contracts/stream-schema.yaml (`components.schemas`) → the TS type's fields. */
export const SCHEMA_FIELDS = {
  StartData: { required: ['stream_id', 'block_type', 'provider', 'model', 'scripted'], optional: ['cached', 'follow_up', 'input', 'notice', 'parent_stream_id', 'shared'] },
  QueuedData: { required: ['position'], optional: [] },
  TokenData: { required: ['text', 'tokens'], optional: ['t'] },
  QuizQuestionData: { required: ['index', 'question'], optional: [] },
  QuizItem: { required: ['question', 'choices'], optional: ['answer_index', 'explanation'] },
  DiagramPartialData: { required: ['text'], optional: [] },
  SnapshotData: { required: ['start', 'text', 'questions', 'output_tokens'], optional: [] },
  ResetData: { required: ['reason', 'message'], optional: [] },
  DoneData: { required: ['status', 'reason', 'usage', 'result'], optional: [] },
  ErrorData: { required: ['code', 'message', 'status', 'retryable'], optional: ['usage', 'result'] },
  ShutdownData: { required: ['message', 'retry_after_ms'], optional: [] },
  Usage: { required: ['input_tokens', 'output_tokens'], optional: [] },
  BlockResult: { required: ['block_type', 'text'], optional: ['questions', 'diagram'] },
  DiagramCheck: { required: ['valid', 'errors'], optional: [] },
  BlockOptions: { required: [], optional: ['answer_key', 'max_tokens', 'num_questions'] },
  WsStart: { required: ['type', 'block_type'], optional: ['follow_up', 'input', 'options', 'parent_stream_id', 'request_id'] },
  WsResume: { required: ['type', 'stream_id'], optional: ['after', 'request_id'] },
  WsStop: { required: ['type', 'stream_id'], optional: ['request_id'] },
  WsAccepted: { required: ['type', 'request_id', 'stream_id', 'action'], optional: ['caught_up'] },
  WsRejected: { required: ['type', 'request_id', 'stream_id', 'error'], optional: [] },
  WsRejectedDetail: { required: ['code', 'message'], optional: ['field'] },
} as const satisfies Record<string, Fields>;

/** Event type → the schema of its `data`. */
export const EVENT_DATA_SCHEMA = {
  start: 'StartData',
  queued: 'QueuedData',
  token: 'TokenData',
  'quiz.question': 'QuizQuestionData',
  'diagram.partial': 'DiagramPartialData',
  snapshot: 'SnapshotData',
  reset: 'ResetData',
  done: 'DoneData',
  error: 'ErrorData',
  shutdown: 'ShutdownData',
} as const satisfies Record<string, keyof typeof SCHEMA_FIELDS>;

// -- compile-time agreement of the lists above with the types -------------------

interface SchemaTypes {
  StartData: StartData;
  QueuedData: QueuedData;
  TokenData: TokenData;
  QuizQuestionData: QuizQuestionData;
  QuizItem: QuizItem;
  DiagramPartialData: DiagramPartialData;
  SnapshotData: SnapshotData;
  ResetData: ResetData;
  DoneData: DoneData;
  ErrorData: ErrorData;
  ShutdownData: ShutdownData;
  Usage: Usage;
  BlockResult: BlockResult;
  DiagramCheck: DiagramCheck;
  BlockOptions: BlockOptions;
  WsStart: WsStart;
  WsResume: WsResume;
  WsStop: WsStop;
  WsAccepted: WsAccepted;
  WsRejected: WsRejected;
  WsRejectedDetail: ErrorDetail;
}

type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Table = typeof SCHEMA_FIELDS;

type Agreement = {
  [K in keyof SchemaTypes]: K extends keyof Table
    ? Exact<Table[K]['required'][number], RequiredKeys<SchemaTypes[K]>> extends true
      ? Exact<Table[K]['optional'][number], OptionalKeys<SchemaTypes[K]>> extends true
        ? true
        : ['optional fields differ', K]
      : ['required fields differ', K]
    : ['no field list', K];
};

/** `tsc` fails here, naming the schema, when a list above disagrees with its type. */
export const FIELD_LISTS_MATCH_TYPES: Agreement = {
  StartData: true,
  QueuedData: true,
  TokenData: true,
  QuizQuestionData: true,
  QuizItem: true,
  DiagramPartialData: true,
  SnapshotData: true,
  ResetData: true,
  DoneData: true,
  ErrorData: true,
  ShutdownData: true,
  Usage: true,
  BlockResult: true,
  DiagramCheck: true,
  BlockOptions: true,
  WsStart: true,
  WsResume: true,
  WsStop: true,
  WsAccepted: true,
  WsRejected: true,
  WsRejectedDetail: true,
};

type EventAgreement = {
  [K in EventType]: Exact<EventDataMap[K], SchemaTypes[(typeof EVENT_DATA_SCHEMA)[K]]>;
};

/** `tsc` fails here when an event's data type is not the one its schema name says. */
export const EVENT_TYPES_MATCH_SCHEMAS: EventAgreement & Record<Exclude<keyof typeof EVENT_DATA_SCHEMA, EventType>, never> = {
  start: true,
  queued: true,
  token: true,
  'quiz.question': true,
  'diagram.partial': true,
  snapshot: true,
  reset: true,
  done: true,
  error: true,
  shutdown: true,
};
