/**
 * HTTPS and HTTP/2 in the browser: a server of this spec's own (`python -m quartapp` with
 * TLS_CERTFILE/TLS_KEYFILE, a certificate made here by openssl for 127.0.0.1), Chromium told to
 * accept it (ignoreHTTPSErrors, this spec only).
 *
 * Why it matters: over HTTP/1.1 a browser opens at most six connections per host, and an SSE
 * stream holds its connection for its whole life, so the page's four blocks, a second tab and
 * one more stream would leave nothing for the page's own fetches (the seventh request waits for
 * a stream to end). Over HTTP/2 every stream is one multiplexed stream of a single connection.
 * The proof comes from the Chrome DevTools Protocol, not from the page: every EventSource
 * response says `protocol: 'h2'` and the same `connectionId`, and their tokens interleave.
 * Then a cut: a TCP proxy that relays the TLS bytes as they are resets the connection
 * mid-answer, the EventSource reconnects with Last-Event-ID (a new connection, h2 again), and
 * the answer equals an uncut one, word for word.
 */
import { expect, test, type CDPSession, type Page } from '@playwright/test';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCutProxy } from './cutProxy.ts';
import { answer, ask, block, collapse, expectedAnswer, waitForStatus } from './helpers.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');
const python = process.env.E2E_PYTHON ?? join(repoRoot, '.venv', 'bin', 'python');
/** The page's four blocks plus two EventSources: six, HTTP/1.1's per-host connection cap. */
const STREAMS = 6;

test.use({ ignoreHTTPSErrors: true });
test.describe.configure({ mode: 'serial' });

let server: ChildProcess | undefined;
let certDir = '';
let origin = '';
let port = 0;

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
  const address = probe.address();
  await new Promise<void>((done) => probe.close(() => done()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function healthy(url: string): Promise<boolean> {
  return new Promise((done) => {
    // a probe on loopback of a certificate the test just made: not verified, like the browser here
    get(url, { rejectUnauthorized: false, timeout: 2_000 }, (response) => {
      response.resume();
      done(response.statusCode === 200);
    }).on('error', () => done(false));
  });
}

test.beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'tls-http2-'));
  const [certfile, keyfile] = [join(certDir, 'cert.pem'), join(certDir, 'key.pem')];
  execFileSync('/usr/bin/openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyfile, '-out', certfile,
  ], { stdio: 'ignore' });
  port = await freePort();
  origin = `https://127.0.0.1:${port}`;
  server = spawn(python, ['-m', 'quartapp'], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      AI_PROVIDER: 'scripted',
      LOG_LEVEL: 'WARNING',
      SECRET_KEY: randomBytes(32).toString('hex'),
      SCRIPTED_TOKEN_INTERVAL_MS: '60', // the page's answers last seconds: long enough to overlap
      MAX_CONCURRENT_STREAMS: String(STREAMS + 2), // the default (4, the page's blocks) would refuse the fifth
      HOST: '127.0.0.1',
      PORT: String(port),
      TLS_CERTFILE: certfile,
      TLS_KEYFILE: keyfile,
      FRONTEND_DIST: join(here, '..', 'dist'),
    },
  });
  const deadline = Date.now() + 60_000;
  while (!(await healthy(`${origin}/healthz`))) {
    if (server.exitCode !== null) throw new Error(`the TLS server exited ${server.exitCode}`);
    if (Date.now() > deadline) throw new Error('the TLS server did not answer within 60 s');
    await new Promise((done) => setTimeout(done, 100));
  }
});

test.afterAll(async () => {
  if (server?.pid !== undefined && server.exitCode === null) {
    const exited = new Promise((done) => server?.once('exit', done));
    process.kill(server.pid, 'SIGTERM');
    await exited;
  }
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

interface Stream {
  url: string;
  protocol: string | undefined;
  connectionId: number;
  firstContent?: number;
  done?: number;
  lastEventId?: string;
  types: Set<string>;
}

/** What a stream streams: text tokens, quiz questions, diagram source. */
const CONTENT = new Set(['token', 'quiz.question', 'diagram.partial']);

/** Every EventSource response the page gets, from the DevTools protocol: its protocol, its
 * connection, and when its first content and its `done` arrived (the browser's monotonic clock). */
async function watchEventSources(page: Page): Promise<{ cdp: CDPSession; streams: Map<string, Stream>; documentConnection: () => number | undefined }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const streams = new Map<string, Stream>();
  let documentConnection: number | undefined;
  cdp.on('Network.responseReceived', ({ requestId, type, response }) => {
    if (type === 'Document') documentConnection = response.connectionId;
    if (type !== 'EventSource') return;
    streams.set(requestId, { url: response.url, protocol: response.protocol, connectionId: response.connectionId, types: new Set() });
  });
  cdp.on('Network.eventSourceMessageReceived', ({ requestId, eventName, eventId, timestamp }) => {
    const stream = streams.get(requestId);
    if (stream === undefined) return;
    stream.lastEventId = eventId;
    stream.types.add(eventName);
    if (CONTENT.has(eventName)) stream.firstContent ??= timestamp;
    if (eventName === 'done') stream.done = timestamp;
  });
  return { cdp, streams, documentConnection: () => documentConnection };
}

test('six streams at once share one HTTP/2 connection', async ({ page }) => {
  const { streams, documentConnection } = await watchEventSources(page);
  await page.goto(`${origin}/`);
  await block(page, 'quiz').getByRole('button', { name: 'Make quiz' }).click();
  await ask(page, 'Why do leaves change colour');
  await block(page, 'explain_eli10').getByRole('button', { name: 'Explain' }).click();
  // two more readers in the same page: one-shot streams, closed at their end (else EventSource reconnects)
  await page.evaluate((count) => {
    for (let i = 0; i < count; i += 1) {
      const source = new EventSource(`/api/stream/ai-block/ask_question?question=${encodeURIComponent(`Why is snow white ${i}`)}&max_tokens=160`);
      source.addEventListener('done', () => source.close());
      source.addEventListener('error', () => source.close());
    }
  }, STREAMS - 4);
  // A quiz question arrives whole (seconds in); the diagram is the shortest answer (under two
  // seconds): it starts once the quiz streams, so that all six are mid-answer at once.
  const quizStreaming = () => [...streams.values()].some((s) => s.types.has('quiz.question'));
  await expect.poll(quizStreaming, { timeout: 20_000 }).toBe(true);
  await block(page, 'diagram').getByRole('button', { name: 'Draw diagram' }).click();
  await expect.poll(() => [...streams.values()].filter((s) => s.done !== undefined).length, { timeout: 45_000 }).toBe(STREAMS);
  for (const type of ['ask_question', 'explain_eli10', 'quiz'] as const) await waitForStatus(page, type, 'Done');

  const all = [...streams.values()];
  const seen = all.map(({ url, protocol, connectionId, firstContent, done }) => ({ path: new URL(url).pathname, protocol, connectionId, firstContent, done }));
  test.info().annotations.push({ type: 'cdp', description: JSON.stringify({ document: documentConnection(), streams: seen }) });
  expect(all).toHaveLength(STREAMS);
  expect(all.map((s) => s.protocol)).toEqual(Array(STREAMS).fill('h2'));
  expect(new Set(all.map((s) => s.connectionId)).size).toBe(1);
  expect(all[0]?.connectionId).toBe(documentConnection()); // the page's own connection, too
  // they overlapped: every stream had its first content before any stream ended
  const firsts = all.map((s) => s.firstContent ?? Infinity);
  const ends = all.map((s) => s.done ?? -Infinity);
  expect(Math.max(...firsts)).toBeLessThan(Math.min(...ends));
});

test('a cut TLS connection resumes with Last-Event-ID, no word lost or repeated', async ({ page, playwright }) => {
  const question = 'How do bees find flowers';
  const api = await playwright.request.newContext({ baseURL: origin, ignoreHTTPSErrors: true });
  const expected = await expectedAnswer(api, 'ask_question', question, 160); // the same request, uncut
  await api.dispose();
  const proxy = await startCutProxy(port);
  try {
    const { streams } = await watchEventSources(page);
    const resumedWith: Promise<string | null>[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/events')) resumedWith.push(r.headerValue('last-event-id'));
    });
    await page.goto(`https://127.0.0.1:${proxy.port}/`);
    await ask(page, question);
    await expect.poll(async () => collapse((await answer(page).textContent()) ?? '').length).toBeGreaterThan(40);

    proxy.cut(); // the TCP connection, and with it the TLS session and every h2 stream, reset mid-answer
    const atCut = collapse((await answer(page).textContent()) ?? '');
    expect(atCut.length).toBeLessThan(expected.length);

    await waitForStatus(page, 'ask_question', 'Done');
    expect(collapse((await answer(page).textContent()) ?? '')).toBe(expected); // nothing lost, nothing repeated
    await expect(block(page, 'ask_question').getByTestId('count')).toHaveText('160 tokens');

    const headers = await Promise.all(resumedWith);
    expect(headers.length).toBeGreaterThanOrEqual(2);
    expect(headers[0]).toBeNull();
    const reads = [...streams.values()];
    expect(headers[1]).toMatch(/-\d+$/);
    expect(headers[1]).toBe(reads[0]?.lastEventId); // the browser's own reconnect, from the last event before the cut
    const seen = reads.map(({ protocol, connectionId, lastEventId }) => ({ protocol, connectionId, lastEventId }));
    test.info().annotations.push({ type: 'cdp', description: JSON.stringify({ headers, streams: seen }) });
    expect(reads.every((s) => s.protocol === 'h2')).toBe(true);
    expect(new Set(reads.map((s) => s.connectionId)).size).toBe(reads.length); // a new connection after the cut
    expect(proxy.accepted).toBeGreaterThanOrEqual(2);
  } finally {
    await proxy.close();
  }
});
