/**
 * A team's own page: `useChat` from @ai-sdk/react pointed at our server, as the README shows.
 * Built by e2e/ai-sdk.spec.ts and served at /sdk-page/ on the server's origin.
 */
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, type UIMessage } from 'ai';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

const api = '/api/ai-sdk/ask_question/chat';

function textOf(message: UIMessage): string {
  return message.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

function Chat() {
  const { messages, sendMessage, stop, status } = useChat({
    id: 'sdk-page-chat',
    transport: new DefaultChatTransport({ api, body: { options: { max_tokens: 60 } } }),
    resume: true, // after a reload: GET {api}/{chatId}/stream, 204 when nothing runs
  });
  const answer = messages.findLast((message) => message.role === 'assistant');
  const streamId = (answer?.metadata as { stream_id?: string } | undefined)?.stream_id;
  async function stopAll(): Promise<void> {
    await stop(); // the fetch
    if (streamId) await fetch(`/api/streams/${streamId}/stop`, { method: 'POST' }); // the generation
  }
  return (
    <main>
      <button type="button" onClick={() => void sendMessage({ text: 'How do bees make honey?' })}>Ask</button>
      <button type="button" onClick={() => void stopAll()}>Stop</button>
      <p data-testid="status">{status}</p>
      <p data-testid="answer">{answer ? textOf(answer) : ''}</p>
      <p data-testid="stream">{streamId ?? ''}</p>
    </main>
  );
}

createRoot(document.getElementById('root')!).render(<StrictMode><Chat /></StrictMode>);
