import '@testing-library/jest-dom/vitest';
import { cleanup } from '@testing-library/react';
import { EventSource } from 'eventsource';
import { afterEach } from 'vitest';

// jsdom on Node 20 has no EventSource; msw's sse() and our EventSource reader need one.
if (!('EventSource' in globalThis)) {
  Object.defineProperty(globalThis, 'EventSource', { value: EventSource, writable: true, configurable: true });
}

afterEach(() => cleanup());
