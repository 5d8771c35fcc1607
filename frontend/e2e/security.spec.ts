/**
 * Hostile model output runs no script. The scripted provider strips most
 * punctuation from the topic it echoes, so the hostile text is injected at the
 * network layer (page.route) in place of the server's stream.
 */
import { expect, test, type Page } from '@playwright/test';
import { join } from 'node:path';
import { SCREENSHOTS, answer, block, waitForStatus } from './helpers.ts';

const HOSTILE_MARKDOWN = [
  'Look: <img src=x onerror="window.__xss=\'img\'"> and <script>window.__xss=\'script\'</script>',
  '',
  '[click me](javascript:window.__xss=\'link\') and ![pic](javascript:window.__xss=\'imgsrc\')',
  '',
  '<a href="javascript:window.__xss=\'a\'">raw anchor</a> <svg onload="window.__xss=\'svg\'"></svg>',
  '',
  '[data link](data:text/html,<script>parent.__xss=1</script>) and [fine](https://example.org/)',
].join('\n');

const HOSTILE_MERMAID = [
  'flowchart TD',
  '    A["<img src=x onerror=window.__xss=\'mermaid\'>"] --> B[Leaf]',
  '    B --> C["<a href=javascript:window.__xss=\'mlink\'>go</a>"]',
  '    click A "javascript:window.__xss=\'mclick\'"',
  '',
].join('\n');

function sse(events: { type: string; data: unknown }[]): string {
  return events.map((e, i) => `id: evil-${i + 1}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`).join('');
}

async function mockStream(page: Page, blockType: string, text: string): Promise<void> {
  await page.route('**/api/streams', (route) =>
    route.fulfill({
      status: 201,
      contentType: 'application/json',
      body: JSON.stringify({
        stream_id: 'evil',
        block_type: blockType,
        status: 'running',
        events_url: '/api/streams/evil/events',
        status_url: '/api/streams/evil',
        stop_url: '/api/streams/evil/stop',
        websocket_url: null,
      }),
    }),
  );
  const pieces = text.match(/[\s\S]{1,7}/g) ?? [];
  const start = { stream_id: 'evil', block_type: blockType, provider: 'mock', model: 'hostile', scripted: true, notice: null };
  const partType = blockType === 'diagram' ? 'diagram.partial' : 'token';
  const events = [
    { type: 'start', data: start },
    ...pieces.map((piece) => ({ type: partType, data: partType === 'token' ? { text: piece, tokens: 1 } : { text: piece } })),
    {
      type: 'done',
      data: {
        status: 'complete',
        reason: 'finished',
        usage: { input_tokens: 1, output_tokens: pieces.length },
        result: { block_type: blockType, text },
      },
    },
  ];
  await page.route('**/api/streams/evil/events**', (route) =>
    route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, body: sse(events) }),
  );
}

async function noScriptRan(page: Page): Promise<void> {
  expect(await page.evaluate(() => (window as unknown as { __xss?: unknown }).__xss)).toBeUndefined();
}

test('Markdown with raw HTML and javascript: links runs nothing', async ({ page }) => {
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await mockStream(page, 'ask_question', HOSTILE_MARKDOWN);
  await page.goto('/');
  await block(page, 'ask_question').getByRole('button', { name: 'Ask' }).click();
  await waitForStatus(page, 'ask_question', 'Done');
  const text = answer(page);
  await expect(text).toContainText('<img src=x onerror="window.__xss=\'img\'">'); // shown, as text
  await expect(text.locator('img, script, svg, iframe')).toHaveCount(0);
  await expect(text.locator('a[href^="javascript"], a[href^="data"]')).toHaveCount(0);
  await expect(text.locator('a[href="https://example.org/"]')).toHaveAttribute('rel', /noopener/);
  await text.getByText('click me').click();
  await text.getByText('data link').click();
  await page.waitForTimeout(200);
  await noScriptRan(page);
  expect(dialogs).toEqual([]);
  expect(page.url()).not.toContain('javascript');
  await block(page, 'ask_question').screenshot({ path: join(SCREENSHOTS, 'hostile-markdown.png') });
});

test('a hostile Mermaid diagram runs nothing (securityLevel strict)', async ({ page }) => {
  await mockStream(page, 'diagram', HOSTILE_MERMAID);
  await page.goto('/');
  const diagram = block(page, 'diagram');
  await diagram.getByRole('button', { name: 'Draw diagram' }).click();
  await waitForStatus(page, 'diagram', 'Done');
  await expect(diagram.getByTestId('diagram').or(diagram.getByTestId('diagram-invalid'))).toBeVisible();
  // Mermaid's sanitiser may keep a harmless <img>, but never a handler, a script or a javascript: link
  await expect(diagram.locator('[data-testid="diagram"] :is([onerror], [onload], [onclick], script, iframe)')).toHaveCount(0);
  await expect(diagram.locator('[data-testid="diagram"] :is(a[href^="javascript"], a[*|href^="javascript"])')).toHaveCount(0);
  const nodes = diagram.locator('[data-testid="diagram"] .node');
  if ((await nodes.count()) > 0) await nodes.first().click({ force: true });
  await page.waitForTimeout(200);
  await noScriptRan(page);
});
