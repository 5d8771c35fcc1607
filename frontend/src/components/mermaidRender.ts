/**
 * Mermaid, loaded on first use (a separate chunk: it is most of the bundle).
 * `securityLevel: 'strict'` keeps model-written labels from running script or
 * carrying links; the source is parsed before it is rendered, so invalid
 * output becomes a message instead of Mermaid's error picture.
 */
import type { Mermaid } from 'mermaid';

let loading: Promise<Mermaid> | null = null;

export function loadMermaid(): Promise<Mermaid> {
  loading ??= import('mermaid').then(({ default: mermaid }) => {
    mermaid.initialize({ startOnLoad: false, securityLevel: 'strict', theme: 'neutral', fontFamily: 'inherit' });
    return mermaid;
  });
  loading.catch(() => {
    loading = null; // let a later attempt load it again
  });
  return loading;
}

export type MermaidOutcome = { ok: true; svg: string } | { ok: false; message: string };

let counter = 0;

export async function renderMermaid(source: string): Promise<MermaidOutcome> {
  const mermaid = await loadMermaid();
  try {
    await mermaid.parse(source);
  } catch (error) {
    return { ok: false, message: firstLine(error) };
  }
  counter += 1;
  const id = `mermaid-diagram-${counter}`;
  try {
    const { svg } = await mermaid.render(id, source);
    return { ok: true, svg };
  } catch (error) {
    return { ok: false, message: firstLine(error) };
  } finally {
    document.getElementById(`d${id}`)?.remove(); // mermaid's scratch element, left behind on failure
  }
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').slice(0, 4).join('\n');
}
