"""Stylizing a video with a saved U-Net: every frame, the same timing, the audio kept (PyAV).

PyAV is an optional extra (``pip install 'clipstyle_opt[video]'``); without it
`import_av` raises one clear line. Frames keep their timestamps, so the frame
rate (constant or variable) is the input's; audio streams are copied packet for
packet when the output container takes their codec, else re-encoded (AAC in
MP4/MOV, Opus in WebM). The output is written to a temporary file beside the
target and renamed into place only when complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..errors import ClipstyleError, ImageReadError, first_line

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
"""Inputs with these suffixes are videos."""
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
"""Video outputs (AVI is read, not written: it cannot keep variable timestamps)."""
_ENCODERS = {".webm": ("libvpx", "libvpx-vp9")}
_DEFAULT_ENCODERS = ("libx264", "h264", "mpeg4")
_AUDIO_ENCODERS = {".webm": "libopus"}


def is_video(path: str | Path) -> bool:
    """True if ``path`` has a video suffix (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def import_av() -> Any:
    """The ``av`` module, or a one-line `ClipstyleError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise ClipstyleError("video needs PyAV, which is not installed: pip install 'clipstyle_opt[video]'") from None
    return av


@dataclass
class VideoInfo:
    """What `probe` reads from a video's header: size in px, frame count (0 if the header does not say),
    average frame rate (frames/s) and the number of audio streams."""

    width: int
    height: int
    frames: int
    rate: Fraction
    audio_streams: int


def probe(path: str | Path) -> VideoInfo:
    """Open a video and read its first video stream's header; `ImageReadError` if it is not a readable video."""
    av = import_av()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageReadError(f"no video stream in {path}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(0)
            return VideoInfo(stream.codec_context.width, stream.codec_context.height, int(stream.frames or 0),
                             Fraction(rate), len(container.streams.audio))
    except ImageReadError:
        raise
    except Exception as exc:  # av.error.InvalidDataError, OSError...
        first = first_line(exc)
        raise ImageReadError(f"not a video, or a damaged one: {path} ({first[:120]})") from None


def _even(value: int) -> int:
    """yuv420p needs even sides."""
    return max(2, value - value % 2)


def _video_encoder(av: Any, suffix: str) -> str:
    for name in _ENCODERS.get(suffix, _DEFAULT_ENCODERS):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not built into this FFmpeg
            continue
    raise ClipstyleError(f"this FFmpeg (in PyAV) has no video encoder for {suffix} files; try .mp4 or .mkv")


def frames_rgb(path: str | Path) -> Iterator[np.ndarray]:
    """Decode every frame of a video's first video stream as an H x W x 3 uint8 RGB array."""
    av = import_av()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


FrameFn = Callable[[np.ndarray], np.ndarray]
"""Turns one H x W x 3 uint8 RGB frame into the stylized frame (uint8, any fixed size)."""


def stylize_video(source: str | Path, target: str | Path, stylize_frame: FrameFn, size: tuple[int, int], *,
                  progress: Optional[Callable[[int], None]] = None, crf: int = 18) -> int:
    """Write ``target`` with every frame of ``source`` passed through ``stylize_frame``; returns the frame count.

    size: (height, width) of the frames ``stylize_frame`` returns; odd sides lose
    their last row or column (the yuv420p encoders need even sides).

    Timestamps and frame rate are the source's; audio is copied (re-encoded if
    the container cannot hold its codec). ``crf``: the H.264/VP9 quality
    (0 lossless .. 51; 18 is visually lossless). ``progress(frames_done)`` is
    called after each frame. Written atomically: on any failure no ``target``
    (nor a temporary file) is left.
    """
    from ..imageio import atomic_write

    av = import_av()
    source, target = Path(source), Path(target)
    suffix = target.suffix.lower()
    count = 0

    def write(tmp: str) -> None:
        nonlocal count
        with av.open(str(source)) as inp, av.open(tmp, "w", format=_container_format(suffix)) as out:
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            vout = out.add_stream(_video_encoder(av, suffix), rate=rate)
            vout.pix_fmt = "yuv420p"
            vout.width, vout.height = _even(size[1]), _even(size[0])
            vout.time_base = vin.time_base
            options = {"crf": str(crf)} if vout.codec_context.name in ("libx264", "libvpx", "libvpx-vp9") else {}
            if vout.codec_context.name == "mpeg4":
                vout.codec_context.qscale = 2
            vout.options = options
            audio = [(stream, _audio_out(av, out, stream, suffix)) for stream in inp.streams.audio]
            demux = inp.demux(vin, *[stream for stream, _ in audio])
            for packet in demux:
                if packet.stream.type == "audio":
                    _, (aout, copy) = next(pair for pair in audio if pair[0] is packet.stream)
                    if packet.dts is None:
                        continue
                    if copy:
                        packet.stream = aout
                        out.mux(packet)
                    else:
                        for frame in packet.decode():
                            frame.pts = None
                            out.mux(aout.encode(frame))
                    continue
                for frame in packet.decode():
                    styled = stylize_frame(frame.to_ndarray(format="rgb24"))
                    styled = styled[:vout.height, :vout.width]
                    new = av.VideoFrame.from_ndarray(np.ascontiguousarray(styled), format="rgb24")
                    new.pts, new.time_base = frame.pts, frame.time_base
                    out.mux(vout.encode(new))
                    count += 1
                    if progress is not None:
                        progress(count)
            out.mux(vout.encode(None))
            for _, (aout, copy) in audio:
                if not copy:
                    out.mux(aout.encode(None))

    try:
        atomic_write(target, write)
    except ClipstyleError:
        raise
    except Exception as exc:  # FFmpeg errors while decoding or encoding
        first = first_line(exc)
        raise ClipstyleError(f"cannot convert the video {source} ({type(exc).__name__}: {first[:160]}); "
                             f"nothing was written") from None
    return count


def _container_format(suffix: str) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[suffix]


_COPYABLE_AUDIO = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    ".webm": {"opus", "vorbis"},
}
_COPYABLE_AUDIO[".m4v"] = _COPYABLE_AUDIO[".mp4"]


def _audio_out(av: Any, out: Any, stream: Any, suffix: str) -> tuple[Any, bool]:
    """The output stream for one input audio stream, and whether its packets are copied (else re-encoded)."""
    codec = stream.codec_context.name
    if suffix == ".mkv" or codec in _COPYABLE_AUDIO.get(suffix, set()):
        return out.add_stream_from_template(stream), True
    codec = _AUDIO_ENCODERS.get(suffix, "aac")
    rate = stream.codec_context.sample_rate or 48000
    aout = out.add_stream(codec, rate=rate)
    aout.layout = stream.codec_context.layout
    return aout, False


def flicker(frames: Iterator[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames, in 8-bit levels (0..255) per channel.

    Compare an output's against its input's: more than the input's means the
    stylization itself varies from frame to frame.
    """
    total, pairs, previous = 0.0, 0, None
    for frame in frames:
        current = frame.astype(np.int16)
        if previous is not None and previous.shape == current.shape:
            total += float(np.abs(current - previous).mean())
            pairs += 1
        previous = current
    return total / pairs if pairs else 0.0
