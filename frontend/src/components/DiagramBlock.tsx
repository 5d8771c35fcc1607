import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useAIBlockStreaming } from '../ai/streamHooks.ts';
import { renderMermaid, type MermaidOutcome } from './mermaidRender.ts';
import { StreamMessages, StreamStatusBar } from './StreamStatusBar.tsx';
import type { BlockProps } from './TextAnswerBlock.tsx';
import { FollowUps, TurnHeading, askedLabel, endNote } from './FollowUps.tsx';

type Rendering = { state: 'none' } | { state: 'rendering' } | ({ state: 'rendered' } & MermaidOutcome);

/** Put a drawn SVG into its holder (Mermaid's own output in strict mode, built as DOM: see mermaidRender.ts). */
const holding = (svg: SVGSVGElement) => (el: HTMLDivElement | null) => void (el && el.firstChild !== svg && el.replaceChildren(svg));

export function DiagramBlock({ topic, join }: BlockProps) {
  const stream = useAIBlockStreaming('diagram');
  const [input, setInput] = useState(topic);
  const [rendering, setRendering] = useState<Rendering>({ state: 'none' });
  const inputId = useId();
  const titleId = useId();
  const running = stream.status === 'connecting' || stream.status === 'streaming';
  const finalSource = stream.status === 'done' && stream.outcome === 'complete' ? stream.source : null;
  const { streamId } = stream;
  // each turn's picture, by stream id: an earlier turn ("More detail" asked of it) stays drawn above
  const drawn = useRef(new Map<string, SVGSVGElement>());

  const { join: follow } = stream;
  useEffect(() => {
    if (join) follow(join.streamId);
  }, [join, follow]);

  useEffect(() => {
    if (finalSource === null || finalSource.trim() === '') {
      setRendering({ state: 'none' });
      return;
    }
    let current = true;
    setRendering({ state: 'rendering' });
    renderMermaid(finalSource).then(
      (outcome) => {
        if (outcome.ok && streamId !== null) drawn.current.set(streamId, outcome.svg);
        if (current) setRendering({ state: 'rendered', ...outcome });
      },
      (error: unknown) =>
        current && setRendering({ state: 'rendered', ok: false, message: `could not load the diagram renderer: ${String(error)}` }),
    );
    return () => {
      current = false;
    };
  }, [finalSource, streamId]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const text = input.trim();
    if (text) void stream.run(text);
  };

  const rendered = rendering.state === 'rendered' && rendering.ok ? rendering.svg : null;
  const invalid = rendering.state === 'rendered' && !rendering.ok ? rendering.message : null;
  const serverErrors = stream.diagram && !stream.diagram.valid ? stream.diagram.errors : [];

  return (
    <section className="aib-block" aria-labelledby={titleId} data-block="diagram" data-status={stream.status} {...stream.blockProps}>
      <h2 id={titleId}>Diagram</h2>
      <p className="block-description">A Mermaid flowchart: the source streams in, the picture is drawn when it is complete.</p>
      <form className="ask-form" onSubmit={submit}>
        <label htmlFor={inputId}>Topic</label>
        <div className="input-row">
          <input id={inputId} value={input} onChange={(e) => setInput(e.target.value)} maxLength={2000} required />
          <button type="submit" disabled={running || !input.trim()}>
            Draw diagram
          </button>
        </div>
      </form>
      {stream.thread.length > 0 ? (
        <ol className="thread" aria-label="Earlier diagrams" data-testid="thread">
          {stream.thread.map((turn) => {
            const svg = drawn.current.get(turn.streamId);
            return (
              <li key={turn.streamId} className="thread-turn" data-testid="thread-turn">
                <TurnHeading ask={turn} note={endNote(turn)} />
                {svg ? (
                  <figure className="diagram" data-testid="thread-diagram">
                    <div className="diagram-svg" ref={holding(svg)} />
                    <figcaption className="visually-hidden">Earlier diagram: {askedLabel(turn)}</figcaption>
                  </figure>
                ) : null}
                <details className="source-details">
                  <summary>Mermaid source</summary>
                  <pre>
                    <code>{turn.text}</code>
                  </pre>
                </details>
              </li>
            );
          })}
        </ol>
      ) : null}
      <StreamStatusBar stream={stream} />
      {stream.thread.length > 0 && stream.asked ? <TurnHeading ask={stream.asked} current /> : null}
      {stream.status === 'idle' ? <p className="placeholder">The diagram appears here.</p> : null}
      {rendered !== null ? (
        <figure className="diagram" data-testid="diagram">
          {/* Mermaid's own output in strict mode (sanitised by its DOMPurify), built as DOM (see mermaidRender.ts). */}
          <div className="diagram-svg" ref={holding(rendered)} />
          <figcaption className="visually-hidden">Diagram of {input}</figcaption>
        </figure>
      ) : null}
      {rendering.state === 'rendering' ? <p className="notice">Drawing…</p> : null}
      {invalid !== null ? (
        <div className="error" role="alert" data-testid="diagram-invalid">
          <p>
            <strong>This diagram source is not valid Mermaid</strong>, so it is shown as text.
          </p>
          <pre className="error-detail">{invalid}</pre>
          {serverErrors.length > 0 ? (
            <ul>
              {serverErrors.map((e, i) => (
                <li key={i}>{e}</li>
              ))}
            </ul>
          ) : null}
        </div>
      ) : null}
      {stream.status !== 'idle' ? (
        rendered !== null ? (
          <details className="source-details">
            <summary>Mermaid source</summary>
            <pre>
              <code>{stream.source}</code>
            </pre>
          </details>
        ) : (
          <pre className={running ? 'source streaming' : 'source'} {...stream.outputProps} aria-label="Mermaid source">
            <code data-testid="diagram-source">{stream.source}</code>
            {running ? <span className="caret" aria-hidden="true" /> : null}
          </pre>
        )
      ) : null}
      <FollowUps stream={stream} title="Diagram" />
      <StreamMessages stream={stream} />
    </section>
  );
}
