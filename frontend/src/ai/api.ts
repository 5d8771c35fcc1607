/** Plain HTTP calls the page makes besides streaming. */
import type { QuizAnswer, StreamStatus } from './events.ts';
import { StreamRequestError, failureFromResponse, failureOf } from './transport.ts';
import { apiUrl } from './urls.ts';

/** `GET <baseUrl>/api/streams/<id>`: whether a stream exists, its block type and how it stands. */
export async function fetchStreamStatus(streamId: string, baseUrl = ''): Promise<StreamStatus> {
  let response: Response;
  try {
    response = await fetch(apiUrl(baseUrl, `/api/streams/${encodeURIComponent(streamId)}`), { headers: { accept: 'application/json' } });
  } catch (error) {
    throw new StreamRequestError(failureOf(error));
  }
  if (!response.ok) throw new StreamRequestError(await failureFromResponse(response));
  return (await response.json()) as StreamStatus;
}

/**
 * `POST <baseUrl>/api/streams/<id>/answer`: the learner's choice for one quiz question, and the
 * server's verdict with the answer and why (once per question: a second answer is `409 already_answered`).
 */
export async function postQuizAnswer(
  streamId: string,
  index: number,
  choice: number,
  baseUrl = '',
  fetchFn: typeof fetch = (...args) => fetch(...args),
): Promise<QuizAnswer> {
  let response: Response;
  try {
    response = await fetchFn(apiUrl(baseUrl, `/api/streams/${encodeURIComponent(streamId)}/answer`), {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      body: JSON.stringify({ index, choice }),
    });
  } catch (error) {
    throw new StreamRequestError(failureOf(error));
  }
  if (!response.ok) throw new StreamRequestError(await failureFromResponse(response));
  return (await response.json()) as QuizAnswer;
}
