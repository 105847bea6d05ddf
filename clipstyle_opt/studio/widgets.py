"""Gradio pieces every tab uses: the one-line error a page shows (`user_error`, `guarded`), image inputs whose
uploads are checked before Gradio decodes them (`checked_image`), the mask input (painted in an image editor
over the photo, or uploaded: `MaskInput`), and the session a request belongs to."""
from __future__ import annotations

import functools
import inspect
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from ..devices import is_out_of_memory
from ..errors import ClipstyleError, ImageReadError, first_line
from .masks import mask_file
from .security import UploadLimits, check_image_upload

log = logging.getLogger("clipstyle_opt.studio")


def user_error(exc: BaseException) -> gr.Error:
    """The page's message for a failure: the command line's line for a user's error, one line for a bug."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, ClipstyleError):
        return gr.Error(f"error: {exc}", print_exception=False)
    if is_out_of_memory(exc):
        return gr.Error("error: out of memory; use smaller images or settings", print_exception=False)
    log.exception("studio job failed")
    return gr.Error(f"error: unexpected {type(exc).__name__}: {first_line(exc, fallback='')[:200]} "
                    "(a bug: the server log has the traceback)", print_exception=False)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a function or a generator function) with every exception turned into `user_error`."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure ends as one line in the page
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise user_error(exc) from None
        return gen

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure ends as one line in the page
            raise user_error(exc) from None
    return call


def session_of(request: gr.Request | None) -> str:
    """The browser session a request comes from (Gradio's session hash; "anonymous" without one)."""
    return getattr(request, "session_hash", None) or "anonymous"


def checked_image(limits: UploadLimits, what: str = "photo", **kwargs: Any) -> gr.Image:
    """An image input, read as a file path, whose upload goes through `check_image_upload` (byte and pixel
    bounds, the command line's safe loader) before anything decodes it: Gradio's own decoder never sees it.

    The check replaces the instance's ``preprocess`` rather than subclassing gr.Image: Gradio writes a ``.pyi``
    file beside the module of every Component subclass, and a package should not write into itself.
    """
    image = gr.Image(type="filepath", **kwargs)

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        try:
            return str(check_image_upload(payload.path, what, limits))
        except ClipstyleError as exc:
            raise user_error(exc) from None

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def _check_blob(blob: bytes | None, what: str, limits: UploadLimits) -> None:
    """A layer the editor sent as bytes: bounded like a file upload (written to a temporary file for the check,
    then removed)."""
    if blob is None:
        return
    if len(blob) > limits.max_bytes:
        raise ImageReadError(f"{what} too large: {len(blob):,} bytes, over the studio's limit of "
                             f"{limits.max_bytes:,} bytes")
    path = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / f"clipstyle-blob-{uuid.uuid4().hex}.png"
    try:
        path.write_bytes(bytes(blob))
        check_image_upload(path, what, limits)
    finally:
        path.unlink(missing_ok=True)


def mask_editor(limits: UploadLimits, what: str, **kwargs: Any) -> gr.ImageEditor:
    """An image editor to paint a mask over the photo (its background, set from the photo input): a white brush
    on one layer; what is painted is stylized. Every image it sends (files or blobs) is bounded and checked as
    uploads are (`check_image_upload`) before Gradio decodes it; layers travel as PNG (lossless alpha)."""
    editor = gr.ImageEditor(type="filepath", sources=[], format="png", image_mode="RGBA", transforms=(),
                            brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed"),
                            layers=False, **kwargs)
    original = editor.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is None:
            return None
        try:
            if getattr(payload, "id", None) is not None:
                cached = editor.blob_storage.get(payload.id)
                for blob in ([cached.background, *cached.layers] if cached else []):
                    _check_blob(blob, what, limits)
            else:
                for item in [payload.background, *payload.layers]:
                    if item is not None:
                        check_image_upload(item.path, what, limits)
        except ClipstyleError as exc:
            raise user_error(exc) from None
        return original(payload)

    editor.preprocess = preprocess  # type: ignore[method-assign]
    return editor


@dataclass
class MaskInput:
    """One mask of the page, painted (``editor``) or uploaded (``upload``), read as `clipstyle_opt.studio.masks`
    turns it into the file ``--mask`` would name."""

    editor: gr.ImageEditor
    upload: gr.Image
    what: str

    @classmethod
    def build(cls, limits: UploadLimits, what: str, elem_id: str) -> "MaskInput":
        """The editor (painted over the photo) and, beside it, an upload, labelled with ``what``."""
        with gr.Row():
            editor = mask_editor(limits, what, label=f"{what}: paint on the photo (white = stylize)",
                                 elem_id=f"{elem_id}-paint", height=260)
            upload = checked_image(limits, what, label=f"or upload the {what}", sources=["upload"],
                                   elem_id=f"{elem_id}-upload", height=260)
        return cls(editor, upload, what)

    def file(self, painted: Any, uploaded: str | None, limits: UploadLimits) -> str | None:
        """The mask file for a run (None: no mask), checked by the command line's rules (`masks.mask_file`)."""
        return mask_file(painted, uploaded, self.what, limits)


def photo_background(photo: str | None) -> dict[str, Any] | None:
    """The editor value that shows ``photo`` with nothing painted (None: no photo, an empty editor)."""
    return None if photo is None else {"background": photo, "layers": [], "composite": photo}


__all__ = ["MaskInput", "checked_image", "guarded", "mask_editor", "photo_background", "session_of", "user_error"]
