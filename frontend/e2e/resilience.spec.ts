/**
 * Streams that survive: a connection cut mid-answer resumes without repeated
 * text (SSE via EventSource, SSE via fetch, WebSocket), a transport switch
 * mid-answer, a second tab joining a running stream, and stop / retry.
 */
import { expect, test, type Page } from '@playwright/test';
import { startCutProxy } from './cutProxy.ts';
import { answer, ask, block, collapse, expectedAnswer, waitForStatus } from './helpers.ts';

const QUESTION = 'How do roots drink water';

async function textLength(page: Page): Promise<number> {
  return collapse((await answer(page).textContent()) ?? '').length;
}

async function waitForSomeText(page: Page, atLeast = 40): Promise<void> {
  await expect.poll(() => textLength(page), { timeout: 15_000 }).toBeGreaterThan(atLeast);
}

for (const transport of ['sse', 'sse-fetch', 'websocket'] as const) {
  test(`a connection cut mid-stream resumes without repeated text (${transport})`, async ({ page, request }) => {
    const expected = await expectedAnswer(request, 'ask_question', QUESTION, 160);
    const proxy = await startCutProxy(Number(process.env.E2E_PORT));
    try {
      let eventRequests = 0;
      let sockets = 0;
      page.on('request', (r) => {
        if (r.url().includes('/events')) eventRequests += 1;
      });
      page.on('websocket', () => (sockets += 1));
      await page.goto(`${proxy.url}/${transport === 'sse' ? '' : `?transport=${transport}`}`);
      await ask(page, QUESTION);
      await waitForSomeText(page);

      // Outage: every open connection is reset and new ones fail for 1.5 s;
      // the server keeps generating meanwhile.
      proxy.down = true;
      proxy.cut();
      await expect(block(page, 'ask_question').getByTestId('status')).toHaveText(/Reconnecting|Connection lost/);
      await page.waitForTimeout(1_500);
      const during = await textLength(page);
      expect(during).toBeLessThan(expected.length);
      proxy.down = false;

      await waitForStatus(page, 'ask_question', 'Done');
      expect(collapse((await answer(page).textContent()) ?? '')).toBe(expected); // nothing lost, nothing repeated
      if (transport === 'websocket') expect(sockets).toBeGreaterThanOrEqual(2);
      else expect(eventRequests).toBeGreaterThanOrEqual(2);
      await expect(block(page, 'ask_question').getByTestId('count')).toHaveText('160 tokens');
    } finally {
      await proxy.close();
    }
  });
}

test('switching transport mid-stream resumes from the same event', async ({ page, request }) => {
  const expected = await expectedAnswer(request, 'ask_question', QUESTION, 160);
  let sockets = 0;
  page.on('websocket', () => (sockets += 1));
  await page.goto('/');
  await ask(page, QUESTION);
  await waitForSomeText(page);
  await page.getByRole('radio', { name: 'WebSocket' }).check();
  await waitForSomeText(page, 120);
  await page.getByRole('radio', { name: 'SSE (fetch)' }).check();
  await waitForStatus(page, 'ask_question', 'Done');
  expect(collapse((await answer(page).textContent()) ?? '')).toBe(expected);
  expect(sockets).toBe(1);
  expect(page.url()).toContain('transport=sse-fetch');
});

test('a second tab joins a running stream', async ({ page, context, request }) => {
  const expected = await expectedAnswer(request, 'ask_question', QUESTION, 160);
  await page.goto('/');
  await ask(page, QUESTION);
  await waitForSomeText(page);
  const share = block(page, 'ask_question').getByRole('link', { name: 'Open in new tab' });
  const href = await share.getAttribute('href');
  expect(href).toMatch(/^\?stream=/);

  const second = await context.newPage();
  await second.goto(`/${href}&transport=websocket`);
  await expect(second.getByRole('status')).toContainText('Following stream');
  await waitForStatus(second, 'ask_question', 'Done');
  await waitForStatus(page, 'ask_question', 'Done');
  expect(collapse((await answer(second).textContent()) ?? '')).toBe(expected);
  expect(collapse((await answer(page).textContent()) ?? '')).toBe(expected);
});

test('stop keeps the text; retry asks again', async ({ page, request }) => {
  const expected = await expectedAnswer(request, 'ask_question', QUESTION, 160);
  await page.goto('/');
  await ask(page, QUESTION);
  await waitForSomeText(page);
  await block(page, 'ask_question').getByRole('button', { name: 'Stop' }).click();
  await waitForStatus(page, 'ask_question', 'Stopped');
  const kept = collapse((await answer(page).textContent()) ?? '');
  expect(kept.length).toBeGreaterThan(40);
  expect(kept.length).toBeLessThan(expected.length);
  expect(expected.startsWith(kept.replace(/\s*$/, ''))).toBe(true);
  await page.waitForTimeout(300);
  expect(collapse((await answer(page).textContent()) ?? '')).toBe(kept);

  await block(page, 'ask_question').getByRole('button', { name: 'Retry' }).click();
  await waitForStatus(page, 'ask_question', 'Done');
  expect(collapse((await answer(page).textContent()) ?? '')).toBe(expected);
});

test('joining an unknown stream says so', async ({ page }) => {
  await page.goto('/?stream=nope');
  await expect(page.getByRole('status')).toContainText('Cannot join nope: no such stream');
});
