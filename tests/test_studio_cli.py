"""``clipstyle serve``'s checks before anything starts: the install hint without gradio, --share offline, --auth,
the warning on 0.0.0.0 (the server itself is tested in test_studio.py)."""
from __future__ import annotations

import sys
import time

import pytest
from click.testing import CliRunner

from clipstyle_opt.cli.main import cli
from clipstyle_opt.studio import server
from studio_server import MICRO_CLIP


def invoke(*args):
    return CliRunner().invoke(cli, ["serve", *args])


def test_without_gradio_one_line_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    result = invoke("--clip-model", MICRO_CLIP)
    assert result.exit_code == 1
    assert result.output.strip() == ("error: clipstyle serve needs the studio extra: "
                                     "pip install 'clipstyle_opt[studio]'")


def test_share_offline_fails_fast_in_one_line(monkeypatch):
    monkeypatch.setattr(server, "SHARE_SERVER", ("share.invalid", 443))  # never resolves, online or not
    monkeypatch.setattr(server, "launch", lambda *a, **k: pytest.fail("launched despite --share failing"))
    started = time.monotonic()
    with pytest.raises(server.ClipstyleError):
        server.check_share(timeout_s=3.0)
    assert time.monotonic() - started < 3.0 + 2.0  # the probe's own limit, plus a thread's start and join
    result = invoke("--share", "--clip-model", MICRO_CLIP)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: --share needs Gradio's share server")


def test_bad_auth_and_model_names_are_one_line(monkeypatch):
    monkeypatch.setattr(server, "launch", lambda *a, **k: pytest.fail("launched"))
    result = invoke("--auth", "nopassword", "--clip-model", MICRO_CLIP)
    assert result.exit_code == 1 and result.output.strip() == "error: --auth must be USER:PASS, both non-empty"
    result = invoke("--clip-model", "ViT-B/32@-1")
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1


def test_every_host_but_loopback_warns_that_anyone_can_run_jobs(monkeypatch):
    calls = []
    monkeypatch.setattr(server, "launch", lambda options, **kwargs: calls.append((options, kwargs)))
    result = invoke("--host", "0.0.0.0", "--port", "7999", "--clip-model", MICRO_CLIP, "--auth", "me:pw")
    assert result.exit_code == 0, result.output
    assert "warning: --host 0.0.0.0: anyone who can reach port 7999" in result.output
    options, kwargs = calls[0]
    assert kwargs["host"] == "0.0.0.0" and kwargs["auth"] == ("me", "pw") and kwargs["share"] is False
    assert list(options.clip_models) == [MICRO_CLIP]
    assert "warning" not in invoke("--clip-model", MICRO_CLIP).output
    assert server.bind_warning("127.0.0.1") is None and server.bind_warning("::1") is None
