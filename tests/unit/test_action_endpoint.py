"""Rasa's call to the action server against real HTTP servers on 127.0.0.1: answers pass
through, a form's 400 still reaches Rasa, and a server that is down, hung or failing
gives the trouble response instead of silence."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from bot.action_endpoint import ActionServerEndpoint, trouble_answer

BODY = {"next_action": "action_check_order_status", "tracker": {"sender_id": "s"}}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/webhook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/webhook"


@pytest.fixture
async def answering() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"events": [], "responses": [{"text": body["next_action"]}]})

    runner, url = await serve(handler)
    yield url
    await runner.cleanup()


def endpoint(url: str, timeout: float = 5) -> ActionServerEndpoint:
    return ActionServerEndpoint.replacing(EndpointConfig(url=url, headers={"X-Test": "1"}), timeout)


async def test_an_answer_passes_through(answering: str) -> None:
    answer = await endpoint(answering).request(json=BODY, method="post", timeout=300)
    assert answer == {"events": [], "responses": [{"text": "action_check_order_status"}]}


async def test_the_settings_of_the_configured_endpoint_are_kept() -> None:
    configured = EndpointConfig(url="http://127.0.0.1:1/webhook", token="t", cafile=None)
    replaced = ActionServerEndpoint.replacing(configured, 3)
    assert (replaced.url, replaced.token, replaced.timeout_seconds) == (configured.url, "t", 3)


async def test_a_server_that_is_down_gets_the_trouble_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    answer = await endpoint(f"http://127.0.0.1:{port}/webhook").request(json=BODY)
    assert answer == trouble_answer()
    assert "unreachable for action_check_order_status" in caplog.text
    assert "sender_id" not in caplog.text  # the tracker (customer messages) is never logged


async def test_a_hung_server_gets_the_trouble_answer_after_the_timeout() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    runner, url = await serve(hang)
    try:
        started = asyncio.get_running_loop().time()
        answer = await endpoint(url, timeout=1).request(json=BODY)
        waited = asyncio.get_running_loop().time() - started
    finally:
        await runner.cleanup()
    assert answer == trouble_answer()
    assert 0.9 <= waited < 10  # gave up at its own deadline, not Rasa's five minutes


async def test_a_failing_server_gets_the_trouble_answer() -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Traceback ...")

    runner, url = await serve(fail)
    try:
        assert await endpoint(url).request(json=BODY) == trouble_answer()
    finally:
        await runner.cleanup()


async def test_a_validation_rejection_still_reaches_rasa() -> None:
    async def reject(request: web.Request) -> web.Response:
        return web.json_response({"action_name": "validate_x", "error": "no"}, status=400)

    runner, url = await serve(reject)
    try:
        with pytest.raises(ClientResponseError) as raised:
            await endpoint(url).request(json=BODY)
    finally:
        await runner.cleanup()
    assert raised.value.status == 400
