// Time from the click on "Ask" to the first token visible in the page, in Debian's Chromium.
//   node scripts/first-token.mjs http://127.0.0.1:8000 [runs] [transport]
// Prints each run and the median. The server must be running (any provider).
import { chromium } from '@playwright/test';

const [base = 'http://127.0.0.1:8000', runsArg = '5', transport = 'sse'] = process.argv.slice(2);
const runs = Number(runsArg);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const times = [];
try {
  for (let i = 0; i < runs; i += 1) {
    const page = await browser.newPage();
    await page.goto(`${base}/?transport=${transport}`);
    const section = page.locator('section[data-block="ask_question"]');
    await section.getByRole('textbox').fill(`Why is the sky blue? (${i})`);
    // the observer starts before the click, so nothing is missed
    await page.evaluate(() => {
      const w = window;
      w.__firstToken = new Promise((resolve) => {
        const answer = () => document.querySelector('section[data-block="ask_question"] [data-testid="answer"]');
        const obs = new MutationObserver(() => {
          if ((answer()?.textContent ?? '').trim().length > 0) { obs.disconnect(); resolve(performance.now()); }
        });
        obs.observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      document.querySelector('section[data-block="ask_question"] button[type="submit"], section[data-block="ask_question"] button')
        ?.addEventListener('click', () => { w.__clickAt = performance.now(); }, { once: true, capture: true });
    });
    await section.getByRole('button', { name: 'Ask' }).click();
    const ms = await page.evaluate(async () => (await window.__firstToken) - window.__clickAt);
    times.push(ms);
    console.log(`run ${i + 1}: ${ms.toFixed(1)} ms`);
    // stop the answer: a closed tab alone keeps generating (by design), and the
    // next run would wait behind it in the local model's queue
    const stop = section.getByRole('button', { name: 'Stop' });
    if (await stop.isVisible()) await stop.click();
    await page.waitForFunction(
      () => !/Streaming|Connecting/.test(document.querySelector('section[data-block="ask_question"] [data-testid="status"]')?.textContent ?? ''),
    );
    await page.close();
  }
} finally {
  await browser.close();
}
times.sort((a, b) => a - b);
console.log(`median click -> first visible token (${transport}): ${times[Math.floor(times.length / 2)].toFixed(1)} ms over ${runs} runs`);
