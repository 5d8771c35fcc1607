/**
 * Markdown as it streams: remend closes what is unfinished (`**bold te` →
 * `**bold te**`, a half-written link becomes its text), react-markdown renders
 * it. Model output is untrusted:
 * - raw HTML is never rendered: react-markdown shows it as text (no rehype-raw);
 * - a link keeps its href only for absolute http(s) URLs (`urlTransform`), and
 *   opens with rel="noopener noreferrer";
 * - images are not loaded: they become a link to the image.
 */
import { memo } from 'react';
import Markdown, { defaultUrlTransform, type Components } from 'react-markdown';
import remarkGfm from 'remark-gfm';
import remend from 'remend';

/** Keep a URL only when it is absolute http(s); everything else (javascript:, data:, relative) is dropped. */
export function safeUrl(url: string): string {
  const trimmed = url.trim();
  if (!/^https?:\/\//i.test(trimmed)) return '';
  try {
    const parsed = new URL(trimmed);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return '';
  } catch {
    return '';
  }
  return defaultUrlTransform(trimmed);
}

const components: Components = {
  a: ({ href, children }) =>
    href ? (
      <a href={href} target="_blank" rel="noopener noreferrer nofollow">
        {children}
      </a>
    ) : (
      <span className="md-dead-link">{children}</span>
    ),
  img: ({ src, alt }) =>
    typeof src === 'string' && src ? (
      <a href={src} target="_blank" rel="noopener noreferrer nofollow" className="md-image-link">
        [image{alt ? `: ${alt}` : ''}]
      </a>
    ) : (
      <span className="md-dead-link">[image{alt ? `: ${alt}` : ''}]</span>
    ),
};

const remarkPlugins = [remarkGfm];

interface Props {
  text: string;
  /** Show the caret. */
  streaming: boolean;
  /** Close unfinished Markdown: while streaming, and for an answer cut short (stopped, failed). */
  mend: boolean;
}

export const StreamingMarkdown = memo(function StreamingMarkdown({ text, streaming, mend }: Props) {
  const source = mend ? remend(text, { linkMode: 'text-only' }) : text;
  return (
    <div className={streaming ? 'markdown streaming' : 'markdown'}>
      <Markdown remarkPlugins={remarkPlugins} components={components} urlTransform={safeUrl}>
        {source}
      </Markdown>
      {streaming && text === '' ? <span className="caret-only" aria-hidden="true" /> : null}
    </div>
  );
});
