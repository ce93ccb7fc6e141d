"""test.py --video: frames, size, frame rate and audio kept; clear errors (util/video.py)."""
from __future__ import annotations

import importlib.util
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("coopinit_test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

FRAMES, WIDTH, HEIGHT, FPS, SAMPLE_RATE = 12, 64, 48, 12, 16000


def make_video(path, *, audio: bool = True, width: int = WIDTH, height: int = HEIGHT, codec: str = "libx264") -> None:
    """A clip of moving colour bars with a 440 Hz tone, written with PyAV."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        if sound is not None:
            sound.layout = "mono"
        x = np.arange(width)
        for index in range(FRAMES):
            bars = ((x[None, :, None] + 3 * index + np.array([0, 20, 40])) * 4 % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.broadcast_to(bars, (height, width, 3))),
                                               format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            t = np.arange(SAMPLE_RATE * FRAMES // FPS) / SAMPLE_RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="flt",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode())


def video_args(run, source, out, *extra: str) -> list[str]:
    checkpoints, name = run
    return ["--checkpoints_dir", str(checkpoints), "--name", name, "--video", str(source), "--out", str(out),
            "--gpu_ids", "-1", *extra]


def test_video_keeps_frames_size_rate_and_audio(tiny_trained_run, tmp_path, capsys):
    source, out = tmp_path / "clip.mp4", tmp_path / "translated.mp4"
    make_video(source)
    assert test_script.main(video_args(tiny_trained_run, source, out)) == 0
    printed = capsys.readouterr().out
    assert f"{FRAMES} frames" in printed and "flicker" in printed
    with av.open(str(out)) as result:
        assert result.streams.video[0].average_rate == Fraction(FPS)
        assert result.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in result.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3)
    audio = {}
    for path in (source, out):
        with av.open(str(path)) as container:
            audio[path] = [bytes(p) for p in container.demux(audio=0) if p.size]
    assert audio[out] and audio[out] == audio[source]  # copied packet for packet, not re-encoded
    with av.open(str(source)) as original:
        first = next(original.decode(video=0)).to_ndarray(format="rgb24")
    assert not np.array_equal(frames[0], first)  # translated


def test_video_without_audio(tiny_trained_run, tmp_path):
    source, out = tmp_path / "silent.mp4", tmp_path / "out.mkv"
    make_video(source, audio=False)
    assert test_script.main(video_args(tiny_trained_run, source, out, "--video_codec", "mpeg4")) == 0
    with av.open(str(out)) as result:
        assert not result.streams.audio
        assert sum(1 for _ in result.decode(video=0)) == FRAMES


@pytest.mark.parametrize("case, message", [
    ("missing", "video not found"),
    ("unreadable", "cannot read video"),
    ("codec", "unknown or unusable video codec 'no_such_codec'"),
])
def test_video_errors_are_clear(case, message, tiny_trained_run, tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    extra: list[str] = []
    if case == "unreadable":
        source.write_bytes(b"this is not a video" * 100)
    elif case == "codec":
        make_video(source, audio=False)
        extra = ["--video_codec", "no_such_codec"]
    assert test_script.main(video_args(tiny_trained_run, source, tmp_path / "out.mp4", *extra)) == 2
    assert message in capsys.readouterr().err


def test_video_and_out_go_together(tmp_path):
    with pytest.raises(SystemExit):
        test_script.main(["--video", str(tmp_path / "x.mp4")])


def test_video_out_must_not_be_the_input(tiny_trained_run, tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    make_video(source, audio=False)
    before = source.read_bytes()
    assert test_script.main(video_args(tiny_trained_run, source, tmp_path / "." / "clip.mp4")) == 2
    assert "is the input video (--video): write the translation to another file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_video_of_odd_size_into_a_new_folder_with_the_containers_encoder(tiny_trained_run, tmp_path):
    """libx264 cannot write 4:2:0 at odd sizes (full chroma is used); --out's folder is created;
    a .webm gets an encoder WebM holds (libx264 is not one)."""
    source = tmp_path / "odd.mkv"
    make_video(source, audio=False, width=63, height=47, codec="ffv1")
    outs = [tmp_path / "new" / "sub" / "odd.mp4"]
    if "libvpx-vp9" in av.codecs_available:
        outs.append(tmp_path / "odd.webm")
    for out in outs:
        assert test_script.main(video_args(tiny_trained_run, source, out)) == 0, out
        with av.open(str(out)) as result:
            frames = [f.to_ndarray(format="rgb24") for f in result.decode(video=0)]
        assert len(frames) == FRAMES and frames[0].shape == (47, 63, 3), out
