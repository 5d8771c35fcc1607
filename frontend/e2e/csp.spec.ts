/**
 * The page under its Content-Security-Policy (quartapp/headers.py): all four blocks
 * stream and the diagram is drawn (Mermaid, see mermaidRender.ts) with not one
 * violation, over SSE and over the WebSocket (connect-src 'self' covers ws:), and
 * the policy never allows eval or inline script.
 */
import { expect, test, type Page } from '@playwright/test';
import { ask, block, waitForStatus } from './helpers.ts';

async function watchViolations(page: Page): Promise<{ console: string[]; read: () => Promise<string[]> }> {
  await page.addInitScript(() => {
    const w = window as unknown as { __cspViolations: string[] };
    w.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      w.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber} ${e.sample}`);
    });
  });
  const console: string[] = [];
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) console.push(message.text());
  });
  return { console, read: () => page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations) };
}

function directives(policy: string): Map<string, string[]> {
  return new Map(policy.split(';').map((part) => part.trim().split(/\s+/)).map(([name, ...sources]) => [name!, sources]));
}

for (const transport of ['sse', 'websocket'] as const) {
  test(`no CSP violation while all four blocks stream and the diagram is drawn (${transport})`, async ({ page }) => {
    const violations = await watchViolations(page);
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    const response = await page.goto(transport === 'sse' ? '/' : `/?transport=${transport}`);
    const header = (await response!.allHeaders())['content-security-policy'];
    expect(header).toBeTruthy();
    const policy = directives(header!);
    expect(header).not.toContain('unsafe-eval');
    for (const name of ['default-src', 'script-src', 'script-src-elem', 'script-src-attr']) {
      expect(policy.get(name) ?? [], name).not.toContain("'unsafe-inline'");
    }
    expect(policy.get('script-src')).toEqual(["'self'"]);
    expect(policy.get('style-src') ?? []).not.toContain("'unsafe-inline'");
    expect(policy.get('connect-src')).toEqual(["'self'"]);

    await block(page, 'quiz').getByRole('button', { name: 'Make quiz' }).click();
    await block(page, 'diagram').getByRole('button', { name: 'Draw diagram' }).click();
    await block(page, 'explain_eli10').getByRole('button', { name: 'Explain' }).click();
    await ask(page, 'Why do leaves look green');
    for (const type of ['ask_question', 'explain_eli10', 'quiz', 'diagram'] as const) await waitForStatus(page, type, 'Done');

    const svg = block(page, 'diagram').getByTestId('diagram').locator('svg');
    await expect(svg.locator('g.node')).toHaveCount(4);
    await expect(svg).toContainText('First idea');
    // drawn with Mermaid's sheet (the nonce'd <style>) and its measured layout, not unstyled
    expect(await svg.locator('style').evaluate((el) => (el as HTMLStyleElement).sheet !== null)).toBe(true);
    const box = await svg.locator('g.node').first().boundingBox();
    expect(box!.width).toBeGreaterThan(60); // unstyled, the first label measured about twice as wide
    expect(box!.width).toBeLessThan(300);
    expect(box!.height).toBeLessThan(80);
    if (transport === 'websocket') expect(sockets.length).toBeGreaterThan(0);

    await page.waitForTimeout(300); // a report is queued as a task: let the last one arrive
    expect(await violations.read()).toEqual([]);
    expect(violations.console).toEqual([]);
  });
}
