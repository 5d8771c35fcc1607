/** Plain HTTP calls the page makes besides streaming. */
import type { StreamStatus } from './events.ts';
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
