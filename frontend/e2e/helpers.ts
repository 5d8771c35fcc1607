import { expect, type APIRequestContext, type Locator, type Page } from '@playwright/test';
import { join } from 'node:path';

export const SCREENSHOTS = join(process.cwd(), 'test-results', 'screenshots');

export type Block = 'ask_question' | 'explain_eli10' | 'quiz' | 'diagram';

export function block(page: Page, type: Block): Locator {
  return page.locator(`section[data-block="${type}"]`);
}

export function answer(page: Page, type: Block = 'ask_question'): Locator {
  return block(page, type).getByTestId('answer');
}

/** Markdown as the page shows it: emphasis and code marks gone, whitespace collapsed. */
export function visibleText(markdown: string): string {
  return markdown.replace(/[*`]/g, '').replace(/\s+/g, ' ').trim();
}

export function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** What the scripted provider answers for this input, from the non-streaming endpoint. */
const expectedCache = new Map<string, string>();

export async function expectedAnswer(request: APIRequestContext, type: Block, input: string, maxTokens: number): Promise<string> {
  const key = JSON.stringify([type, input, maxTokens]);
  const cached = expectedCache.get(key);
  if (cached !== undefined) return cached;
  const response = await request.post(`/api/ai-block/${type}`, { data: { input, options: { max_tokens: maxTokens } } });
  expect(response.status()).toBe(200);
  const body = (await response.json()) as { result: { text: string }; scripted: boolean };
  expect(body.scripted).toBe(true);
  const text = visibleText(body.result.text);
  expectedCache.set(key, text);
  return text;
}

/** Record every distinct text of the answer while it changes (before the click that starts it). */
export async function recordGrowth(page: Page, type: Block = 'ask_question'): Promise<void> {
  await page.evaluate((selector) => {
    const w = window as unknown as { __growth: string[] };
    w.__growth = [];
    const observer = new MutationObserver(() => {
      const el = document.querySelector(selector);
      const text = el?.textContent ?? '';
      if (w.__growth.at(-1) !== text) w.__growth.push(text);
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
  }, `section[data-block="${type}"] [data-testid="answer"]`);
}

export async function growth(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __growth: string[] }).__growth);
}

export async function ask(page: Page, question: string, type: Block = 'ask_question'): Promise<void> {
  const section = block(page, type);
  const input = section.getByRole('textbox');
  await input.fill(question);
  await section.getByRole('button', { name: type === 'ask_question' ? 'Ask' : 'Explain' }).click();
}

export async function waitForStatus(page: Page, type: Block, label: string | RegExp, timeout = 30_000): Promise<void> {
  await expect(block(page, type).getByTestId('status')).toHaveText(label, { timeout });
}
