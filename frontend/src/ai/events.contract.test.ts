/**
 * The hand-written wire types agree with contracts/stream-schema.yaml, the
 * AsyncAPI document generated from the server's models: every event type has a
 * TS type, every schema's required and optional fields match, and the enums
 * match. (`contractFields.ts` makes tsc hold the field lists to the types.)
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EVENT_DATA_SCHEMA, SCHEMA_FIELDS } from './contractFields.ts';
import { BLOCK_TYPES, END_STATUSES, EVENT_TYPES, RESET_REASONS, toStreamEvent } from './events.ts';

interface JsonSchema {
  $ref?: string;
  const?: string;
  enum?: string[];
  required?: string[];
  properties?: Record<string, JsonSchema>;
  anyOf?: JsonSchema[];
  pattern?: string;
}

interface AsyncApi {
  components: {
    messages: Record<string, { name: string; payload: JsonSchema }>;
    schemas: Record<string, JsonSchema>;
  };
}

// vitest runs from frontend/ (npm test); the contract sits beside it in the repository.
const schemaPath = resolve(process.cwd(), '..', 'contracts', 'stream-schema.yaml');
const doc = parse(readFileSync(schemaPath, 'utf8')) as AsyncApi;
const { messages, schemas } = doc.components;
const eventMessages = Object.values(messages).filter((m) => m.payload.properties?.type?.const !== undefined);

function refName(schema: JsonSchema | undefined): string {
  const ref = schema?.$ref ?? '';
  return ref.slice(ref.lastIndexOf('/') + 1);
}

function schema(name: string): JsonSchema {
  const found = schemas[name];
  if (!found) throw new Error(`schema ${name} not in stream-schema.yaml`);
  return found;
}

describe('stream contract (contracts/stream-schema.yaml)', () => {
  it('has a TS type for every event type, and no extra ones', () => {
    const inSchema = eventMessages.map((m) => m.payload.properties?.type?.const).sort();
    expect([...EVENT_TYPES].sort()).toEqual(inSchema);
  });

  it('uses the envelope the client reads: id (except on reset), type, data required; stream_id optional', () => {
    for (const message of eventMessages) {
      const required = message.name === 'reset' ? ['data', 'type'] : ['data', 'id', 'type'];
      expect(message.payload.required?.slice().sort(), message.name).toEqual(required);
      expect(Object.keys(message.payload.properties ?? {}).sort(), message.name).toEqual(['data', 'id', 'stream_id', 'type']);
      expect(new RegExp(message.payload.properties?.id?.pattern ?? '$^').test('0f3a-12'), message.name).toBe(true);
    }
  });

  it('maps every event to the data schema the contract names', () => {
    for (const message of eventMessages) {
      const type = message.payload.properties?.type?.const as keyof typeof EVENT_DATA_SCHEMA;
      expect(EVENT_DATA_SCHEMA[type], type).toBe(refName(message.payload.properties?.data));
    }
  });

  it.each(Object.keys(SCHEMA_FIELDS))('%s: required and optional fields match', (name) => {
    const fields = SCHEMA_FIELDS[name as keyof typeof SCHEMA_FIELDS];
    const s = schema(name);
    const required = (s.required ?? []).slice().sort();
    const all = Object.keys(s.properties ?? {}).sort();
    expect([...fields.required].sort(), `${name} required`).toEqual(required);
    expect([...fields.optional].sort(), `${name} optional`).toEqual(all.filter((f) => !required.includes(f)));
  });

  it('covers every schema the events and socket messages use', () => {
    const covered = new Set(Object.keys(SCHEMA_FIELDS));
    const missing = Object.keys(schemas).filter((name) => !covered.has(name));
    expect(missing).toEqual([]);
  });

  it('matches the enums: block types, end statuses, reset reasons', () => {
    expect([...BLOCK_TYPES].sort()).toEqual(schema('StartData').properties?.block_type?.enum?.slice().sort());
    expect([...BLOCK_TYPES].sort()).toEqual(schema('BlockResult').properties?.block_type?.enum?.slice().sort());
    expect([...END_STATUSES].sort()).toEqual(schema('DoneData').properties?.status?.enum?.slice().sort());
    expect([...END_STATUSES].sort()).toEqual(schema('ErrorData').properties?.status?.enum?.slice().sort());
    expect([...RESET_REASONS].sort()).toEqual(schema('ResetData').properties?.reason?.enum?.slice().sort());
  });

  it('parses a frame of every event type as the server writes it', () => {
    const question = { question: 'Q?', choices: ['a', 'b', 'c', 'd'], answer_index: 1, explanation: 'because' };
    const start = { stream_id: 's', block_type: 'quiz', provider: 'scripted', model: 'm', scripted: true, notice: null };
    const usage = { input_tokens: 1, output_tokens: 2 };
    const samples: Record<string, unknown> = {
      start,
      queued: { position: 1 },
      token: { text: 'hi', tokens: 1 },
      'quiz.question': { index: 0, question },
      'diagram.partial': { text: 'flowchart' },
      snapshot: { start, text: '', questions: [question], output_tokens: 3 },
      reset: { reason: 'unknown_cursor', message: 'm' },
      done: { status: 'complete', reason: 'finished', usage, result: { block_type: 'quiz', text: '{}', questions: [question] } },
      error: { code: 'provider_error', message: 'm', status: 'failed', retryable: true, usage: null, result: null },
      shutdown: { message: 'bye', retry_after_ms: 1000 },
    };
    for (const type of EVENT_TYPES) {
      expect(toStreamEvent(type, 'e1-2', samples[type], 's'), type).not.toBeNull();
    }
    expect(toStreamEvent('token', 'e1-2', { text: 5 })).toBeNull();
    expect(toStreamEvent('nonsense', 'e1-2', {})).toBeNull();
  });
});
