"""The studio started in-process on a free loopback port with the micro CLIP, for tests and benchmarks;
`running_studio` always closes it."""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
MICRO_CLIP = str(ROOT / "tests" / "data" / "micro_clip.pt")

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_studio(output_dir: Path, preview_every: float = 0.0) -> Iterator[tuple[object, str]]:
    """(the `gr.Blocks`, its URL) with the micro CLIP on the CPU; closed on the way out."""
    from clipstyle_opt.studio.jobs import StudioOptions
    from clipstyle_opt.studio.server import launch

    port = free_port()
    options = StudioOptions(clip_models=[MICRO_CLIP], device="cpu", output_dir=output_dir,
                            preview_every=preview_every)
    demo = launch(options, host="127.0.0.1", port=port)
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
