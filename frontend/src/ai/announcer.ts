/**
 * The page's one polite announcer (issue 17). `StreamAnnouncer` renders a visually hidden
 * `aria-live="polite"` region and gives `useAIStreaming` / `useAIBlockStreaming` below it the `announce`
 * they call once per moment of their stream (started, queued, question ready, done, stopped, failed).
 * A `StreamAnnouncer` inside another one renders only its children: a page has one region however
 * many providers are nested. `useAnnounce()` gives a host's own components the same region.
 *
 * No I/O: the region is a React element, the announcements are React state.
 */
import { createContext, createElement, Fragment, useCallback, useContext, useMemo, useRef, useState, type ReactNode } from 'react';

export interface Announcer {
  /** Say `message` politely (ignored when empty). */
  announce(message: string): void;
}

const AnnouncerContext = createContext<Announcer | null>(null);

/** The announcer of the nearest `StreamAnnouncer`, or null without one. */
export function useAnnouncer(): Announcer | null {
  return useContext(AnnouncerContext);
}

/** `announce(message)` into the page's region; a no-op without a `StreamAnnouncer`. */
export function useAnnounce(): (message: string) => void {
  const announcer = useContext(AnnouncerContext);
  return useCallback((message: string) => announcer?.announce(message), [announcer]);
}

/** How many recent messages stay in the region (new ones are added, the oldest dropped). */
export const ANNOUNCER_HISTORY = 3;

export interface StreamAnnouncerProps {
  children?: ReactNode;
}

interface Message {
  id: number;
  text: string;
}

/**
 * The visually hidden live region (class `aib-announcer`, styled by styles.css) and its context.
 * Each announcement is added as a new paragraph (`aria-atomic="false"`, additions only), so two
 * blocks finishing in the same frame are both said, and the region never re-reads what it said.
 * It is a plain polite live region, not `role="status"` (whose implicit `aria-atomic="true"` would
 * re-read the history), so a host's own status message stays the page's one `status`.
 */
export function StreamAnnouncer({ children }: StreamAnnouncerProps) {
  const outer = useContext(AnnouncerContext);
  const [messages, setMessages] = useState<readonly Message[]>([]);
  const next = useRef(0);
  const announcer = useMemo<Announcer>(
    () => ({
      announce(text) {
        if (text === '') return;
        next.current += 1;
        const message = { id: next.current, text };
        setMessages((current) => [...current.slice(-(ANNOUNCER_HISTORY - 1)), message]);
      },
    }),
    [],
  );
  if (outer !== null) return createElement(Fragment, null, children);
  return createElement(
    AnnouncerContext.Provider,
    { value: announcer },
    children,
    createElement(
      'div',
      {
        className: 'aib-announcer',
        'aria-live': 'polite',
        'aria-atomic': false,
        'aria-relevant': 'additions',
        'data-testid': 'stream-announcer',
      },
      messages.map((m) => createElement('p', { key: m.id }, m.text)),
    ),
  );
}
