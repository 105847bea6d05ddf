"""Starting the studio: Gradio set up to reach nothing on the internet, a temporary folder per server, the
bind warning, and the share check. ``clipstyle serve`` calls `serve`; tests call `launch` and close it."""
from __future__ import annotations

import os
import socket
import tempfile
import threading
from typing import Any

from ..errors import ClipstyleError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SHARE_SERVER = ("api.gradio.app", 443)
"""Where Gradio's ``share=True`` asks for a tunnel; `check_share` tries to reach it before anything starts."""


def quiet_gradio_environment() -> None:
    """No analytics, no version check, no telemetry: set before gradio is first imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def import_gradio() -> Any:
    """gradio, or a one-line `ClipstyleError` saying how to install the ``studio`` extra."""
    quiet_gradio_environment()
    try:
        import gradio
    except ImportError:
        raise ClipstyleError("clipstyle serve needs the studio extra: pip install 'clipstyle_opt[studio]'") from None
    return gradio


def bind_warning(host: str) -> str | None:
    """The warning for a host other than this machine's loopback, else None."""
    if host in LOCAL_HOSTS:
        return None
    return (f"--host {host}: anyone who can reach port on this address can run jobs on this machine "
            "(use --auth USER:PASS, or keep the default 127.0.0.1)")


def check_share(timeout_s: float = 3.0) -> None:
    """Fail in one line, within ``timeout_s`` seconds, when Gradio's share server cannot be reached (offline)."""
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection(SHARE_SERVER, timeout=timeout_s).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True)  # name resolution can outlast the socket's timeout
    worker.start()
    worker.join(timeout_s)
    if not outcome or outcome[0] is not None:
        raise ClipstyleError(f"--share needs Gradio's share server ({SHARE_SERVER[0]}), which this machine cannot "
                             f"reach; serve without --share (on --host 0.0.0.0 for your network)")


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` -> (user, password); a one-line error without a colon or with an empty part."""
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ClipstyleError("--auth must be USER:PASS, both non-empty")
    return user, password


def launch(options: Any, *, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
           share: bool = False, block: bool = False) -> Any:
    """Build the page and start it; returns the `gr.Blocks` (``close()`` it) unless ``block``.

    Uploads and Gradio's cache go to a temporary folder of this server (``GRADIO_TEMP_DIR``), removed by the
    operating system's temp cleaning; the byte limit applies at upload (Gradio's ``max_file_size``) and again
    when a file is read.
    """
    import_gradio()
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="clipstyle-studio-")
    from .app import build_app

    demo = build_app(options)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, auth=auth, share=share, prevent_thread_lock=not block,
                max_file_size=options.limits.max_bytes, show_error=True, theme=demo.studio_theme, quiet=True, inbrowser=False,
                ssr_mode=False, enable_monitoring=False)
    return demo


__all__ = ["bind_warning", "check_share", "import_gradio", "launch", "parse_auth", "quiet_gradio_environment"]
