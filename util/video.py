"""Translate a video frame by frame with PyAV (FFmpeg): same size, frame rate and frame count, audio copied.

Frames are decoded in order, translated one at a time, and encoded with the input's timestamps, so
the output has the input's frame count and timing. Audio streams are copied packet by packet
(no re-encoding). Each frame is translated on its own, with its own instance-norm statistics:
the flicker figures in the returned report tell how much that moves between frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
from tqdm import tqdm

# The default encoder: the first that this FFmpeg build has and the output container holds.
ENCODERS = ("libx264", "mpeg4", "libvpx-vp9", "ffv1")


class VideoError(ValueError):
    """A video cannot be read or written; the message names the file or flag and the fix."""


@dataclass
class VideoReport:
    """What translate_video did. flicker_*: mean absolute change between consecutive frames, in
    8-bit levels (0-255), of the input and of the output; their ratio shows added flicker."""

    frames: int
    frame_rate: Fraction
    width: int
    height: int
    audio_streams: int
    flicker_input: float
    flicker_output: float


def usable_encoders(writer: av.container.OutputContainer) -> list[str]:
    """The ENCODERS this FFmpeg build has and `writer`'s container holds, in order of preference."""
    return [name for name in ENCODERS if name in av.codecs_available and name in writer.supported_codecs]


def translate_video(translate: Callable[[np.ndarray], np.ndarray], source: str | Path, destination: str | Path, *,
                    channels: int = 3, codec: str | None = None, progress: bool = True) -> VideoReport:
    """Translate every frame of `source` into `destination` (container chosen by its extension).

    translate: uint8 (H, W, channels) RGB (or gray) frame -> uint8 (H, W, C) frame of the same size.
    codec: the video encoder (default: the first of ENCODERS, libx264, mpeg4, libvpx-vp9, ffv1, that
    this FFmpeg build has and the container holds). Raises VideoError for an unreadable or missing
    input, `destination` being the input, a file without video, an unknown codec or container, a
    frame size the encoder refuses, or audio the container cannot hold. Creates destination's folder.
    """
    source, destination = Path(source), Path(destination)
    reader = _open_input(source)
    if destination.resolve() == source.resolve():  # checked before opening, which would truncate it
        reader.close()
        raise VideoError(f"--out {destination} is the input video (--video): write the translation to another file")
    with reader:
        video_in = reader.streams.video[0]
        audio_in = list(reader.streams.audio)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            writer = av.open(str(destination), "w")
        except (ValueError, av.FFmpegError) as err:
            raise VideoError(f"cannot write video {destination}: {err} -- use a known extension such as .mp4 or .mkv "
                             "for --out") from err
        except OSError as err:  # the folder cannot be created
            raise VideoError(f"cannot write video {destination}: {err} -- --out must be in a writable folder") from err
        with writer:
            encoders = usable_encoders(writer)
            if codec is None and not encoders:
                raise VideoError(f"no encoder of {', '.join(ENCODERS)} can write {destination.suffix} files here: "
                                 "write a .mkv file with --out")
            video_out = _add_video_stream(writer, video_in, codec or encoders[0], encoders=encoders)
            audio_out = {stream.index: _copy_stream(writer, stream, destination) for stream in audio_in}
            frames, flicker = 0, _Flicker()
            bar = tqdm(total=video_in.frames or None, desc="frames", unit="frame", disable=not progress)
            with bar:
                for packet in reader.demux(video_in, *audio_in):
                    if packet.stream.type == "audio":
                        if packet.dts is not None:  # the demuxer's final empty packet
                            packet.stream = audio_out[packet.stream.index]
                            writer.mux(packet)
                        continue
                    for frame in _decode(packet, source, frames):
                        pixels = frame.to_ndarray(format="rgb24" if channels == 3 else "gray")
                        result = translate(pixels)
                        flicker.add(pixels, result)
                        _encode(writer, video_out, frame, result)
                        frames += 1
                        bar.update()
                writer.mux(video_out.encode())  # flush the encoder's delayed frames
    return VideoReport(frames=frames, frame_rate=video_out.average_rate, width=video_in.width,
                       height=video_in.height, audio_streams=len(audio_in), flicker_input=flicker.mean("input"),
                       flicker_output=flicker.mean("output"))


def _open_input(source: Path) -> av.container.InputContainer:
    if not source.is_file():
        raise VideoError(f"video not found: {source} -- check --video")
    try:
        reader = av.open(str(source))
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as err:
        raise VideoError(f"cannot read video {source}: {err} -- not a video file FFmpeg can open") from err
    if not reader.streams.video:
        reader.close()
        raise VideoError(f"{source} has no video stream (only {len(reader.streams)} other streams)")
    return reader


def _add_video_stream(writer: av.container.OutputContainer, video_in: av.VideoStream, codec: str, *,
                      encoders: list[str]) -> av.VideoStream:
    rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
    try:
        stream = writer.add_stream(codec, rate=rate)
    except (ValueError, av.FFmpegError) as err:
        hint = ", ".join(encoders) or f"{', '.join(ENCODERS)} with a .mkv --out"
        raise VideoError(f"unknown or unusable video codec {codec!r} (--video_codec): {err} -- "
                         f"try one of {hint}") from err
    stream.width, stream.height = video_in.width, video_in.height
    formats = [f.name for f in (stream.codec.video_formats or [])]
    # 4:2:0 halves the chroma planes, which some encoders (libx264) refuse for odd sizes: keep full chroma there.
    odd = video_in.width % 2 or video_in.height % 2
    preferred = ("yuv444p", "yuv420p") if odd else ("yuv420p",)
    stream.pix_fmt = next((f for f in preferred if f in formats), formats[0] if formats else "yuv420p")
    stream.time_base = video_in.time_base
    return stream


def _copy_stream(writer: av.container.OutputContainer, stream: av.AudioStream, destination: Path) -> av.AudioStream:
    if stream.codec_context.name not in writer.supported_codecs:
        raise VideoError(f"the audio codec {stream.codec_context.name} cannot go into {destination.suffix} files: "
                         "write a .mkv file with --out (Matroska holds any codec)")
    return writer.add_stream_from_template(stream)


def _decode(packet: av.Packet, source: Path, index: int) -> list[av.VideoFrame]:
    try:
        return packet.decode()
    except (av.FFmpegError, ValueError) as err:
        raise VideoError(f"cannot decode frame {index} of {source}: {err} -- the file is damaged or its codec is "
                         "not one this FFmpeg build decodes") from err


def _encode(writer: av.container.OutputContainer, stream: av.VideoStream, frame: av.VideoFrame,
            pixels: np.ndarray) -> None:
    gray = pixels.ndim == 2 or pixels.shape[2] == 1
    out = av.VideoFrame.from_ndarray(pixels.reshape(pixels.shape[:2]) if gray else pixels,
                                     format="gray" if gray else "rgb24")
    out.pts, out.time_base = frame.pts, frame.time_base
    try:
        packets = stream.encode(out)
    except (ValueError, av.FFmpegError) as err:  # the encoder opens at the first frame
        raise VideoError(f"the {stream.codec_context.name} encoder cannot write {stream.width}x{stream.height} "
                         f"{stream.pix_fmt} video: {err} -- try --video_codec ffv1 with a .mkv --out") from err
    writer.mux(packets)


class _Flicker:
    """Running mean of |frame_t - frame_(t-1)| for the input and the output frames."""

    def __init__(self):
        self.previous: dict[str, np.ndarray] = {}
        self.totals = {"input": 0.0, "output": 0.0}
        self.count = 0

    def add(self, source: np.ndarray, result: np.ndarray) -> None:
        current = {"input": source.astype(np.float32), "output": result.astype(np.float32)}
        if self.previous:
            for key in self.totals:
                self.totals[key] += float(np.abs(current[key] - self.previous[key]).mean())
            self.count += 1
        self.previous = current

    def mean(self, key: str) -> float:
        return self.totals[key] / self.count if self.count else 0.0
