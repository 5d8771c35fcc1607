/**
 * The Vercel AI SDK's own client (DefaultChatTransport and readUIMessageStream, what `useChat`
 * runs underneath) against the real server: no reading of its docs on our side. Both lines that
 * run on Node 20: `ai` 5 (the oldest with this protocol) and `ai` 6 (the newest; 7 needs Node 22).
 * Then a page of a team's own (e2e/ai-sdk-page: `useChat` from @ai-sdk/react 2, as the README
 * shows) in Chromium: it streams, reloads mid-stream and resumes, and stops.
 */
import { expect, test, type APIRequestContext, type Page } from '@playwright/test';
import * as ai5 from 'ai';
import type { UIMessage, UIMessageChunk } from 'ai';
import * as ai6 from 'ai6';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const frontend = join(dirname(fileURLToPath(import.meta.url)), '..');
const sdkPage = join(frontend, 'test-results', 'ai-sdk-page');

/** fetch with the session cookie kept (the resume must be the same owner) and our Origin. */
function sessionFetch(base: string): typeof fetch {
  let cookie = '';
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    if (cookie) headers.set('cookie', cookie);
    headers.set('origin', base);
    const response = await fetch(input, { ...init, headers });
    const set = response.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0] ?? '';
    return response;
  };
}

function ask(text: string): UIMessage[] {
  return [{ id: 'u1', role: 'user', parts: [{ type: 'text', text }] }];
}

function textOf(message: UIMessage): string {
  return message.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

/** Our block options, sent through the transport's `body`. */
const options = { max_tokens: 60 };

async function wholeAnswer(request: APIRequestContext, block: string, input: string): Promise<Record<string, unknown>> {
  const response = await request.post(`/api/ai-block/${block}`, { data: { input, options } });
  expect(response.status()).toBe(200);
  return ((await response.json()) as { result: Record<string, unknown> }).result;
}

/** What the tests use of an SDK line; ai 6's types are its own, its behaviour is the point. */
type Sdk = Pick<typeof ai5, 'DefaultChatTransport' | 'readUIMessageStream' | 'callCompletionApi'>;
const SDKS: [string, Sdk][] = [['ai 5.0.277', ai5], ['ai 6.0.333', ai6 as unknown as Sdk]];

for (const [version, sdk] of SDKS) {
  test.describe(version, () => {
    const { DefaultChatTransport, readUIMessageStream, callCompletionApi } = sdk;

    test('ai sdk: useCompletion\'s call streams the completion', async ({ baseURL, request }) => {
      const shown: string[] = [];
      const completion = await callCompletionApi({
        api: `${baseURL}/api/ai-sdk/explain_eli10/completion`, prompt: 'Volcanoes', body: { options },
        credentials: undefined, headers: { origin: baseURL! }, streamProtocol: 'data', fetch: undefined,
        setCompletion: (text) => shown.push(text), setLoading: () => undefined, setError: (error) => { if (error) throw error; },
        setAbortController: () => undefined, onFinish: undefined, onError: (error) => { throw error; },
      });
      const expected = await wholeAnswer(request, 'explain_eli10', 'Volcanoes');
      expect(completion).toBe(expected.text);
      expect(shown.length).toBeGreaterThan(2); // it grew as it streamed
    });

    function chat(baseURL: string, block: string, body: object = { options }): ai5.DefaultChatTransport<UIMessage> {
      return new DefaultChatTransport<UIMessage>({ api: `${baseURL}/api/ai-sdk/${block}/chat`, fetch: sessionFetch(baseURL), body });
    }

    function send(transport: ai5.DefaultChatTransport<UIMessage>, chatId: string, question: string, abortSignal?: AbortSignal) {
      return transport.sendMessages({ chatId, messages: ask(question), trigger: 'submit-message', messageId: undefined, abortSignal });
    }

    async function finalMessage(stream: ReadableStream<UIMessageChunk>): Promise<UIMessage> {
      let last: UIMessage | undefined;
      for await (const message of readUIMessageStream({ stream, terminateOnError: true })) last = message;
      if (!last) throw new Error('the stream held no message');
      return last;
    }

    test('ai sdk: the chat transport streams an answer the SDK assembles, with our metadata', async ({ baseURL, request }) => {
      const question = 'Why is the sky blue?';
      const stream = await send(chat(baseURL!, 'ask_question'), 'chat-answer', question);
      const message = await finalMessage(stream);
      const expected = await wholeAnswer(request, 'ask_question', question);
      expect(message.role).toBe('assistant');
      expect(textOf(message)).toBe(expected.text);
      expect(message.metadata).toMatchObject({ block_type: 'ask_question', status: 'complete', scripted: true });
      expect((message.metadata as { usage: { output_tokens: number } }).usage.output_tokens).toBeGreaterThan(0);
    });

    test('ai sdk: quiz questions arrive as data parts with stable ids, then the whole quiz', async ({ baseURL }) => {
      const stream = await send(chat(baseURL!, 'quiz', { options: { num_questions: 3 } }), 'chat-quiz', 'Volcanoes');
      const message = await finalMessage(stream);
      const questions = message.parts.filter((part) => part.type === 'data-quiz-question');
      expect(questions).toHaveLength(3);
      expect(new Set(questions.map((part) => (part as { id?: string }).id)).size).toBe(3);
      for (const part of questions) expect((part as { data: { choices: string[] } }).data.choices).toHaveLength(4);
      const quiz = message.parts.find((part) => part.type === 'data-quiz') as { data: { questions: unknown[] } } | undefined;
      expect(quiz?.data.questions).toHaveLength(3);
    });

    async function startAndCut(transport: ai5.DefaultChatTransport<UIMessage>, chatId: string, question: string): Promise<UIMessage> {
      const aborted = new AbortController();
      const stream = await send(transport, chatId, question, aborted.signal);
      let partial: UIMessage | undefined;
      for await (const message of readUIMessageStream({ stream })) {
        partial = message;
        if (textOf(message).split(' ').length > 6) break; // a few words in: the page reloads
      }
      aborted.abort(); // its request is gone; the stream goes on
      if (!partial) throw new Error('no message before the cut');
      return partial;
    }

    test('ai sdk: a page that reloads mid-stream resumes to the whole answer once, and 204 after the end', async ({ baseURL, request }) => {
      const transport = chat(baseURL!, 'ask_question');
      const question = 'How do bees make honey?';
      await startAndCut(transport, 'chat-reload', question);
      const resumed = await transport.reconnectToStream({ chatId: 'chat-reload' }); // a fresh page holds nothing
      expect(resumed).not.toBeNull();
      const message = await finalMessage(resumed!);
      const expected = await wholeAnswer(request, 'ask_question', question);
      expect(textOf(message)).toBe(expected.text); // once: no word repeated, none lost
      expect(await transport.reconnectToStream({ chatId: 'chat-reload' })).toBeNull();
      expect(await transport.reconnectToStream({ chatId: 'never-started' })).toBeNull();
    });

    test('ai sdk: a client that kept the partial message says so and gets only the rest', async ({ baseURL, request }) => {
      let held = 0;
      const api = `${baseURL}/api/ai-sdk/ask_question/chat`;
      const transport = new DefaultChatTransport<UIMessage>({
        api, fetch: sessionFetch(baseURL!), body: { options },
        prepareReconnectToStreamRequest: ({ id }) => ({ api: `${api}/${id}/stream?text_chars=${held}` }),
      });
      const question = 'Why do leaves change colour?';
      const partial = await startAndCut(transport, 'chat-kept', question);
      held = textOf(partial).length;
      const resumed = await transport.reconnectToStream({ chatId: 'chat-kept' });
      expect(resumed).not.toBeNull();
      let message = partial; // as useChat does on resume: the stream continues the last assistant message
      for await (const next of readUIMessageStream({ message: structuredClone(partial), stream: resumed! })) message = next;
      const expected = await wholeAnswer(request, 'ask_question', question);
      expect(textOf(message)).toBe(expected.text);
    });

    test('ai sdk: bad input gets our JSON error shape', async ({ baseURL, request }) => {
      const unknown = await request.post(`${baseURL}/api/ai-sdk/poems/chat`, { data: { id: 'c', messages: ask('x') } });
      expect(unknown.status()).toBe(404);
      expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('unknown_block_type');
      const empty = await request.post(`${baseURL}/api/ai-sdk/ask_question/chat`, { data: { id: 'c', messages: [] } });
      expect(empty.status()).toBe(422);
    });
  });
}

test.describe('a useChat page', () => {
  test.beforeAll(() => {
    execFileSync(process.execPath, [join(frontend, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', 'e2e/ai-sdk-page/vite.config.ts'], { cwd: frontend });
  });

  async function open(page: Page, baseURL: string): Promise<void> {
    // served on the server's own origin, as a team's page would be (cookies, the origin check)
    await page.route(`${baseURL}/sdk-page/**`, async (route) => {
      const name = new URL(route.request().url()).pathname.replace(/^\/sdk-page\/?/, '') || 'index.html';
      const file = join(sdkPage, name);
      await (existsSync(file) ? route.fulfill({ path: file }) : route.fulfill({ status: 404 }));
    });
    await page.goto('/sdk-page/');
  }

  /** Open the page, press Ask and wait for `words` words; returns the whole answer the server gives. */
  async function askAndWait(page: Page, baseURL: string, request: APIRequestContext, words: number): Promise<string> {
    const expected = String((await wholeAnswer(request, 'ask_question', 'How do bees make honey?')).text);
    await open(page, baseURL);
    await page.getByRole('button', { name: 'Ask' }).click();
    const answer = page.getByTestId('answer');
    await expect.poll(async () => (await answer.textContent())?.split(' ').length ?? 0).toBeGreaterThan(words);
    return expected;
  }

  test('it streams, reloads mid-stream and resumes without repeating a word', async ({ page, baseURL, request }) => {
    const expected = await askAndWait(page, baseURL!, request, 6);
    const answer = page.getByTestId('answer');
    expect(expected.startsWith((await answer.textContent()) ?? '')).toBe(true);
    await page.reload(); // the page is gone mid-stream; useChat({ resume: true }) reconnects
    await expect(answer).toHaveText(expected);
    await expect(page.getByTestId('status')).toHaveText('ready');
  });

  test('stop ends the generation on the server, not only the fetch', async ({ page, baseURL, request }) => {
    const expected = await askAndWait(page, baseURL!, request, 4);
    const answer = page.getByTestId('answer');
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect(page.getByTestId('status')).toHaveText('ready');
    const streamId = await page.getByTestId('stream').textContent();
    await expect.poll(async () => ((await (await page.request.get(`/api/streams/${streamId}`)).json()) as { status: string }).status).toBe('stopped');
    const shown = (await answer.textContent()) ?? '';
    expect(shown.length).toBeLessThan(expected.length);
    expect(expected.startsWith(shown)).toBe(true);
  });
});
