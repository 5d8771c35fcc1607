/**
 * Mermaid, loaded on first use (a separate chunk: it is most of the bundle).
 * `securityLevel: 'strict'` keeps model-written labels from running script or
 * carrying links; the source is parsed before it is rendered, so invalid
 * output becomes a message instead of Mermaid's error picture.
 *
 * Under the page's Content-Security-Policy (quartapp/headers.py: no inline style,
 * `<style>` elements only with the page's nonce) Mermaid's way of drawing breaks: it
 * inserts a `<style>` element into a scratch element in the page, sets `style`
 * attributes (d3's `attr`) while it measures labels, and runs its finished SVG
 * string, styles included, through DOMPurify's parser. Each is a CSP violation, and
 * a blocked style makes Mermaid measure its labels unstyled: a wrong picture. So for
 * the duration of one render (renders are queued: one at a time) three things differ:
 *
 * 1. a `<style>` element created by script gets the page's nonce (read from Vite's
 *    `<meta property="csp-nonce">`), so Mermaid's sheet applies while it measures;
 * 2. `setAttribute('style', css)` sets `element.style.cssText` instead: the same
 *    style through the CSSOM, which CSP allows to script (it blocks markup);
 * 3. when Mermaid serialises its scratch element, the styles in effect there are
 *    taken out first (each styled element marked with an index), so the string
 *    DOMPurify parses carries no style at all.
 *
 * The picture is then built from the sanitised string: the styles go back through the
 * CSSOM, the sheets into one nonce'd `<style>` inside the SVG. Only styles that were in
 * effect are kept: a `style` attribute the policy blocked (say, in model-written label
 * markup) has an empty `element.style` and is dropped, not laundered.
 * DO NOT "simplify" this back to setting Mermaid's string as innerHTML: every style in
 * it would be a violation, and the page's policy would have to allow inline style.
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

export type MermaidOutcome = { ok: true; svg: SVGSVGElement } | { ok: false; message: string };

/** Marks an element of the serialised SVG whose style was taken out: an index into the styles. */
const MARK = 'data-aib-style';

let counter = 0;
let queue: Promise<unknown> = Promise.resolve();

export function renderMermaid(source: string): Promise<MermaidOutcome> {
  const next = queue.then(() => renderNow(source));
  queue = next.catch(() => undefined);
  return next;
}

async function renderNow(source: string): Promise<MermaidOutcome> {
  const mermaid = await loadMermaid();
  try {
    await mermaid.parse(source);
  } catch (error) {
    return { ok: false, message: firstLine(error) };
  }
  counter += 1;
  const id = `mermaid-diagram-${counter}`;
  const nonce = pageNonce();
  const taken: Taken = { styles: [], sheets: [] };
  const restore = underPolicy(`d${id}`, nonce, taken);
  try {
    const { svg } = await mermaid.render(id, source);
    restore();
    const drawing = rebuild(svg, taken, nonce);
    return drawing ? { ok: true, svg: drawing } : { ok: false, message: 'the diagram renderer returned no picture' };
  } catch (error) {
    return { ok: false, message: firstLine(error) };
  } finally {
    restore();
    document.getElementById(`d${id}`)?.remove(); // mermaid's scratch element, left behind on failure
  }
}

/** The nonce the page was served with ('' without one: then no policy needs it). */
function pageNonce(): string {
  return document.querySelector<HTMLMetaElement>('meta[property="csp-nonce"]')?.nonce ?? '';
}

type Taken = { styles: string[]; sheets: string[] };
type Styled = HTMLElement | SVGElement;

function styled(element: Element): element is Styled {
  return element instanceof HTMLElement || element instanceof SVGElement;
}

/** Points 1 to 3 of the module comment, until the returned function is called. */
function underPolicy(scratchId: string, nonce: string, taken: Taken): () => void {
  const { createElement, createElementNS } = Document.prototype;
  const { setAttribute } = Element.prototype;
  const innerHTML = Object.getOwnPropertyDescriptor(Element.prototype, 'innerHTML');
  const withNonce = <E extends Element>(element: E): E => {
    if (nonce && element.localName === 'style' && styled(element)) element.nonce = nonce;
    return element;
  };
  Document.prototype.createElement = function (this: Document, ...args: Parameters<Document['createElement']>) {
    return withNonce(createElement.apply(this, args));
  } as Document['createElement'];
  Document.prototype.createElementNS = function (this: Document, ...args: [string | null, string]) {
    return withNonce(createElementNS.apply(this, args));
  } as Document['createElementNS'];
  Element.prototype.setAttribute = function (this: Element, name: string, value: string) {
    if (name.toLowerCase() === 'style' && styled(this)) this.style.cssText = String(value);
    else setAttribute.call(this, name, value);
  };
  if (innerHTML?.get) {
    const get = innerHTML.get;
    Object.defineProperty(Element.prototype, 'innerHTML', {
      ...innerHTML,
      get(this: Element) {
        if (this.id === scratchId) takeStyles(this, taken, setAttribute);
        return get.call(this) as string;
      },
    });
  }
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    Object.assign(Document.prototype, { createElement, createElementNS });
    Element.prototype.setAttribute = setAttribute;
    if (innerHTML) Object.defineProperty(Element.prototype, 'innerHTML', innerHTML);
  };
}

/** Take the sheets and the inline styles in effect out of Mermaid's scratch element. */
function takeStyles(root: Element, taken: Taken, setAttribute: Element['setAttribute']): void {
  for (const element of root.querySelectorAll('style')) {
    if ((element as HTMLStyleElement | SVGStyleElement).sheet) taken.sheets.push(element.textContent ?? '');
    element.remove();
  }
  for (const element of root.querySelectorAll('[style]')) {
    const css = styled(element) ? element.style.cssText : ''; // '' when the policy blocked it
    element.removeAttribute('style');
    if (css) setAttribute.call(element, MARK, String(taken.styles.push(css) - 1));
  }
}

/** The picture from Mermaid's sanitised string, its styles put back through the CSSOM. */
function rebuild(svgText: string, taken: Taken, nonce: string): SVGSVGElement | null {
  const template = document.createElement('template');
  template.innerHTML = svgText; // inert: nothing loads or runs, and there is no style in it
  const svg = template.content.querySelector('svg');
  if (svg === null) return null;
  document.adoptNode(svg);
  for (const element of [svg, ...svg.querySelectorAll(`[${MARK}]`)]) {
    if (!element.hasAttribute(MARK)) continue;
    const css = taken.styles[Number(element.getAttribute(MARK))];
    element.removeAttribute(MARK);
    if (css && styled(element)) element.style.cssText = css;
  }
  if (taken.sheets.length > 0) {
    const sheet = document.createElement('style');
    if (nonce) sheet.nonce = nonce;
    sheet.textContent = taken.sheets.join('\n');
    svg.prepend(sheet);
  }
  return svg;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').slice(0, 4).join('\n');
}
