"""Running the study app with uvicorn: in the foreground (`clipstyle study serve`) or in a thread of this
process (tests and the load benchmark), always on an explicit host, 127.0.0.1 by default."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Optional

from ..errors import ClipstyleError
from .app import create_app
from .schema import open_engine

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _config(db: str, host: str, port: int, log_level: str) -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ClipstyleError("serving a study needs uvicorn and fastapi: pip install 'clipstyle_opt[study]'") from None
    engine = open_engine(db)
    # Keep-alive of 30 s (uvicorn: 5 s): a rater's next request usually comes within that, so it rarely
    # meets a connection the server is closing (clients retry then anyway: every request is idempotent).
    return uvicorn.Config(create_app(engine), host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=5, timeout_keep_alive=30)


def serve(db: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "warning") -> None:
    """Serve every study in ``db`` until interrupted."""
    import uvicorn

    server = uvicorn.Server(_config(db, host, port, log_level))
    server.run()
    if not server.started:
        raise ClipstyleError(f"could not listen on {host}:{port} (in use, or not an address of this machine?)")


class ThreadedServer:
    """The app served by uvicorn in a daemon thread; a context manager that always stops it.
    ``url``: ``http://HOST:PORT``."""

    def __init__(self, db: str, host: str = DEFAULT_HOST, port: Optional[int] = None) -> None:
        import uvicorn

        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(_config(db, host, self.port, "error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ClipstyleError(f"the study server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait up to 10 s for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __exit__(self, *exc: Any) -> None:
        self.stop()
