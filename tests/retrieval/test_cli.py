"""`toolrec tools ...` through click, with the session's retriever injected."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import retrieval.cli as tools_cli
from retrieval.retriever import Retriever
from toolrec.cli import cli


@pytest.fixture
def run(retriever: Retriever, monkeypatch):
    monkeypatch.setattr(tools_cli, "_retriever", lambda settings, **kw: retriever)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["tools", *args], catch_exceptions=False)

    return invoke


def test_search_prints_parts(run) -> None:
    out = run("search", "make the screen darker", "--battery", "12", "--k", "5")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "context" in lines[0] and "display.brightness.down" in lines[1]
    assert len(lines) == 6


def test_search_json(run) -> None:
    out = run("search", "turn on wifi", "--json", "--k", "2")
    hits = json.loads(out.output)
    assert hits[0]["tool_id"] == "connectivity.wifi.on" and len(hits) == 2


def test_link_and_show(run) -> None:
    out = run("link", "turn on wifi", "tell me a joke")
    assert "-> connectivity.wifi.on" in out.output and "-> none" in out.output
    shown = json.loads(run("show", "connectivity.wifi.on").output)
    assert shown["action"]["target"] == "WifiManager.setWifiEnabled"


def test_validate_structure_only(run) -> None:
    out = run("validate", "--no-duplicates")
    assert out.exit_code == 0 and "valid" in out.output


def test_validate_rejects_a_broken_file(run, tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"tools": []}))
    out = run("validate", "--catalog", str(path), "--no-duplicates")
    assert out.exit_code == 1 and "too-few-tools" in out.output
