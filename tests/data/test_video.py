"""fastlight.data.video: the one video / image reader and writer (MP4 via PyAV, GIF via Pillow)."""
import numpy as np
import pytest
import torch

from fastlight.data.video import (read_image, read_image_array, read_video, to_uint8_frames, video_fps, write_image,
                                  write_video)


def _frames(n=8, size=24) -> np.ndarray:
    """A square moving right 2 px per frame on grey: (n, size, size, 3) uint8."""
    v = np.full((n, size, size, 3), 90, np.uint8)
    for t in range(n):
        v[t, 8:16, 2 * t:2 * t + 8] = (230, 40, 40)
    return v


def test_mp4_and_gif_round_trip_with_fps(tmp_path):
    v = _frames()
    mp4 = write_video(tmp_path / "a.mp4", np.repeat(np.repeat(v, 4, 1), 4, 2), fps=8)
    gif = write_video(tmp_path / "b.gif", v, fps=8)
    got = read_video(mp4)
    assert got.shape == (8, 96, 96, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.repeat(np.repeat(v, 4, 1), 4, 2)).mean() < 4  # lossy H.264
    assert np.array_equal(read_video(gif), v)  # 3 colours: exact in a GIF palette
    assert video_fps(mp4) == pytest.approx(8.0)
    assert video_fps(gif) == pytest.approx(8.0, rel=0.05)  # GIF stores centiseconds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.gif"]  # no temporary file left


def test_read_video_num_frames_and_stride(tmp_path):
    v = _frames()
    for name in ("c.mp4", "c.gif"):
        path = write_video(tmp_path / name, v, fps=8)
        assert len(read_video(path, num_frames=3)) == 3
        strided = read_video(path, num_frames=3, frame_stride=2)
        assert len(strided) == 3
        assert np.abs(strided.astype(int) - v[[0, 2, 4]]).mean() < 6
        assert len(read_video(path, num_frames=100)) == 8  # shorter than asked: all of it


def test_bad_videos_are_one_line_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.gif").write_bytes(b"GIF89a not really")
    for name in ("empty.mp4", "garbage.gif"):
        with pytest.raises(ValueError, match=f"cannot read video .*{name}") as e:
            read_video(tmp_path / name)
        assert "\n" not in str(e.value)
        assert video_fps(tmp_path / name) is None
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="frame_stride"):
        read_video(tmp_path / "empty.mp4", frame_stride=0)
    with pytest.raises(ValueError, match="use .mp4 or .gif"):
        write_video(tmp_path / "x.avi", _frames())
    assert not (tmp_path / "x.avi").exists()
    with pytest.raises(ValueError, match="even height and width, got 23x24; crop or pad") as e:
        write_video(tmp_path / "odd.mp4", _frames()[:, :23])
    assert "\n" not in str(e.value) and not (tmp_path / "odd.mp4").exists()
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\) uint8, got shape \(8, 24, 24\)"):
        write_video(tmp_path / "grey.mp4", _frames()[..., 0])


def test_an_mp4_holds_every_frame_at_its_rate(tmp_path):
    """The PyAV encoder is flushed: all frames are in the file (H.264 delays some), at the given rate."""
    v = _frames(n=9)
    path = write_video(tmp_path / "n.mp4", v, fps=12)
    assert len(read_video(path)) == 9 and video_fps(path) == pytest.approx(12.0)


def test_images(tmp_path):
    img = torch.linspace(-1, 1, 3 * 6 * 5).reshape(3, 6, 5)
    path = write_image(tmp_path / "i.png", img)
    arr = read_image_array(path)
    assert arr.shape == (6, 5, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, to_uint8_frames(img[:, None])[0])
    assert torch.allclose(read_image(path), img, atol=1 / 127.5)
    with pytest.raises(ValueError, match="needs 4x4; resize it"):
        read_image(path, size=4)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image_array(tmp_path / "bad.png")


def test_folder_of_videos_names_what_it_cannot_read(tmp_path):
    from fastlight.data.video import read_videos, video_files

    write_video(tmp_path / "b.gif", _frames(), fps=4)
    write_video(tmp_path / "a.mp4", _frames(), fps=4)
    (tmp_path / "c.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a video")
    files = video_files(tmp_path)
    assert [p.name for p in files] == ["a.mp4", "b.gif", "c.mp4"]
    frames, unreadable = read_videos(files)
    assert [f is None for f in frames] == [False, False, True]
    assert list(unreadable) == ["c.mp4"] and "cannot read video" in unreadable["c.mp4"]
    with pytest.raises(ValueError, match=r"^none of the 1 video\(s\) in .* can be read \(c.mp4\)"):
        read_videos(files[2:])
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no .mp4/.gif videos in"):
        video_files(tmp_path / "sub")
    with pytest.raises(ValueError, match="not a folder of videos"):
        video_files(tmp_path / "missing")
