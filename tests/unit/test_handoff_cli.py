"""The terminal console says in one line why it cannot work (the e2e test drives it
against a running server)."""

from __future__ import annotations

import pytest

from bench.servers import free_port
from bot import handoff_cli


def test_without_the_agent_api_token_it_says_so(monkeypatch, capsys) -> None:
    monkeypatch.delenv("AGENT_API_TOKEN", raising=False)
    assert handoff_cli.main([]) == 2
    assert "AGENT_API_TOKEN" in capsys.readouterr().err


def test_without_a_server_it_says_so(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("AGENT_API_TOKEN", "token-for-tests")
    monkeypatch.setenv("RASA_PORT", str(free_port()))
    assert handoff_cli.main(["claim", "3", "--agent", "U1"]) == 2
    assert "No server answers" in capsys.readouterr().err
