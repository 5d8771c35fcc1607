"""Fault visibility: ``/metrics`` and ``/readyz`` must show what happened.

Pass criteria: ``/metrics`` (Prometheus text) exposes ``ail_streams_active``,
``ail_time_to_first_token_seconds``, ``ail_inter_token_gap_seconds``, ``ail_resumes_total``,
``ail_stream_errors_total`` and ``ail_log_append_seconds``, and each moves as streams run,
resume and fail: active is 1 while a stream runs and 0 after; the TTFT and gap histograms
count the streams and their tokens; a resume counts under ``outcome="replay"``; a provider
failure counts under ``code="provider_error"``; one log append is observed per event.
``/readyz`` reports the stream log's health (and 503 when it is down: see test_redis_outage).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import pytest

from quartapp.providers.base import Delta, GenerationRequest, ProviderError
from quartapp.streams.manager import LOG_LATENCY_SAMPLE_MASK
from tests.conftest import Server
from tests.faults.support import client_for, make_settings, metric_value, start_app, wait_until
from tests.helpers import assert_error, read_sse, terminal_of

NAMES = (
    "ail_streams_active",
    "ail_time_to_first_token_seconds",
    "ail_inter_token_gap_seconds",
    "ail_resumes_total",
    "ail_stream_errors_total",
    "ail_log_append_seconds",
)


class FailOnRequest:
    """A scripted provider that raises a ProviderError after 3 tokens when the input is "fail"."""

    def __init__(self) -> None:
        from quartapp.providers.scripted import ScriptedProvider

        self.inner = ScriptedProvider(0.005)
        self.info = self.inner.info

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        if request.hints.get("topic") != "fail":
            async for delta in self.inner.stream(request):
                yield delta
            return
        for i in range(3):
            yield Delta(text=f" t{i}", tokens=1)
        raise ProviderError("upstream answered 500")

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.fixture(name="metered")
async def _metered() -> Any:
    server = await start_app(make_settings(METRICS_ENABLED=True), provider=FailOnRequest())  # type: ignore[arg-type]
    yield server
    await server.stop()


async def _scrape(client: httpx2.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_move_with_streams_resumes_and_errors(metered: Server) -> None:
    url = "/api/stream/ai-block/ask_question"
    async with client_for(metered) as client:
        before = await _scrape(client)
        for name in NAMES:
            assert f"# TYPE {name} " in before, f"{name} is not exposed"
        assert metric_value(before, "ail_streams_active") == 0

        # a running stream is active; when it ends it is not
        seen: list[dict[str, Any]] = []
        reader = read_sse(client, url, params={"question": "metrics", "max_tokens": 400}, stop_when=seen.append)
        import asyncio

        task = asyncio.create_task(reader)
        await wait_until(lambda: len(seen) >= 3, 5)
        async with client_for(metered) as other:
            during = await _scrape(other)
        read = await task
        after_one = await _scrape(client)
        assert metric_value(during, "ail_streams_active") == 1
        assert metric_value(after_one, "ail_streams_active") == 0
        tokens = sum(1 for e in read.events if e["type"] == "token")
        assert terminal_of(read.events)["type"] == "done"
        for name, grew_by in (
            ("ail_time_to_first_token_seconds_count", 1),
            # sampled: every 16th gap between tokens; a stream's first append and every 16th after it
            ("ail_inter_token_gap_seconds_count", (tokens - 1) // (LOG_LATENCY_SAMPLE_MASK + 1)),
            ("ail_log_append_seconds_count", -(-len(read.events) // (LOG_LATENCY_SAMPLE_MASK + 1))),
        ):
            assert metric_value(after_one, name) - metric_value(before, name) == grew_by, name
        assert metric_value(after_one, "ail_time_to_first_token_seconds_sum") > metric_value(
            before, "ail_time_to_first_token_seconds_sum"
        )

        # a resume counts
        first = await read_sse(client, url, params={"question": "resume me", "max_tokens": 60}, stop_after=4)
        sid = first.events[0]["data"]["stream_id"]
        rest = await read_sse(client, f"/api/streams/{sid}/events", headers={"Last-Event-ID": first.last_id})
        assert terminal_of(rest.events)["type"] == "done"
        after_resume = await _scrape(client)
        assert metric_value(after_resume, "ail_resumes_total", {"outcome": "replay"}) == (
            metric_value(after_one, "ail_resumes_total", {"outcome": "replay"}) + 1
        )

        # an error counts, by code
        failed = await read_sse(client, url, params={"question": "fail"})
        assert terminal_of(failed.events)["data"]["code"] == "provider_error"
        after_error = await _scrape(client)
        assert metric_value(after_error, "ail_stream_errors_total", {"code": "provider_error"}) == (
            metric_value(after_resume, "ail_stream_errors_total", {"code": "provider_error"}) + 1
        )
        print(
            f"\nafter 3 streams, 1 resume, 1 error: TTFT count "
            f"{metric_value(after_error, 'ail_time_to_first_token_seconds_count'):g}, log appends "
            f"{metric_value(after_error, 'ail_log_append_seconds_count'):g} "
            f"(sum {metric_value(after_error, 'ail_log_append_seconds_sum') * 1000:.1f} ms)"
        )


async def test_readyz_reports_the_stream_log(metered: Server) -> None:
    async with client_for(metered) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["stream_log"] is True, body


async def test_metrics_are_not_served_unless_enabled(server: Server) -> None:
    """Off by default: how busy the service is and which errors it had are not for the public."""
    async with server.client() as client:
        response = await client.get("/metrics")
    assert_error(response, 404, "not_found", None)
    assert "ail_streams_active" not in response.text
