// Check Mermaid sources with Mermaid's own parser (the one the page uses).
// stdin: a JSON array of sources; stdout: a JSON array of {valid, error?}.
// Mermaid needs a DOM for its sanitizer, so jsdom provides one.
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
globalThis.Element = dom.window.Element;

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const sources = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
const results = [];
for (const source of sources) {
  try {
    await mermaid.parse(source);
    results.push({ valid: true });
  } catch (error) {
    results.push({ valid: false, error: String(error?.message ?? error).split('\n').slice(0, 3).join(' ') });
  }
}
process.stdout.write(JSON.stringify(results));
