"""Known-answer checks of every implemented VBench-style dimension on synthetic videos (the table in
the README). Each group of checks is one test; `python tests/evaluate/test_vbench_known_answers.py`
(or `fastlight vbench --validate` in a source checkout) prints the whole table as Markdown."""
from __future__ import annotations

import functools
import time

import cv2
import numpy as np
import pytest
from synthetic_videos import disk_clip, shifted_texture, texture, upscale_video  # beside this file

from fastlight.evaluate.vbench import (DIMENSIONS, aesthetic_quality, background_consistency,
                                       dynamic_degree, dynamic_degree_details, i2v_background, i2v_subject,
                                       imaging_quality, motion_smoothness, subject_consistency, temporal_flickering)


def _row(dim, case, expected, got, ok) -> dict:
    return {"dimension": dim, "case": case, "expected": expected, "got": got, "pass": bool(ok)}


def _fmt(x) -> str:
    return "None" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def _verdict(dynamic: bool) -> str:
    return "dynamic" if dynamic else "static"


def _still() -> np.ndarray:
    return np.stack([texture(32, 32, 3)] * 8)


def _pan_and_other() -> tuple[np.ndarray, np.ndarray]:
    pan = disk_clip(32, [8 + 1.0 * t for t in range(8)])
    other = disk_clip(32, [8 + 1.0 * t for t in range(8)], bg=(200, 200, 40), col=(20, 40, 220))
    return pan, other


def dynamic_degree_checks():
    # panning texture, threshold 6*min(H,W)/256 (64 px: 1.5 px/frame)
    for k in (0.0, 0.5, 1.0, 2.5, 4.0):
        d = dynamic_degree_details(shifted_texture(64, k), 8.0)
        exp = k > 1.5
        yield _row("dynamic_degree", f"64px texture panned {k:g} px/frame @8fps (thres {d['thres']:.2f})",
                   _verdict(exp), f"{_verdict(d['dynamic'])} (top5% {np.median(d['scores']):.2f})", d["dynamic"] == exp)
    # Shapes-world scale: 24 px, thres 0.5625; and its 8x upscale (thres 4.5)
    for k in (0.25, 1.0):
        v = disk_clip(24, [6 + k * t for t in range(8)])
        for s in (1, 8):
            d = dynamic_degree_details(upscale_video(v, s) if s > 1 else v, 8.0)
            exp = k > 0.5625
            yield _row("dynamic_degree", f"{24 * s}px disk moving {k:g} px/frame (at 24 px) @8fps",
                       _verdict(exp), _verdict(d["dynamic"]), d["dynamic"] == exp)
    # fps handling: 16 fps keeps every 2nd frame; 4 fps doubles the threshold
    d = dynamic_degree_details(shifted_texture(64, 1.0, n=16), 16.0)
    yield _row("dynamic_degree", "64px, 1 px/frame @16fps -> every 2nd frame, 2 px/pair", "dynamic",
               f"{_verdict(d['dynamic'])} (interval {d['interval']})", d["dynamic"] and d["interval"] == 2)
    d = dynamic_degree_details(shifted_texture(64, 2.5), 4.0)
    yield _row("dynamic_degree", "64px, 2.5 px/frame @4fps (thres x2 = 3.0)", "static", _verdict(d["dynamic"]),
               not d["dynamic"])


def temporal_flickering_checks():
    base = texture(32, 32, 3)
    rng = np.random.default_rng(1)
    steady = np.stack([np.clip(base.astype(np.int16) + rng.integers(-1, 2, base.shape), 0, 255).astype(np.uint8)
                       for _ in range(8)])
    flick = np.stack([np.clip(base.astype(np.int16) + (12 if t % 2 else -12), 0, 255).astype(np.uint8)
                      for t in range(8)])
    ts, tf, t0 = temporal_flickering(steady), temporal_flickering(flick), temporal_flickering(_still())
    yield _row("temporal_flickering", "identical frames", "1.0", _fmt(t0), t0 == 1.0)
    manual = (255.0 - np.mean([np.abs(flick[i + 1].astype(float) - flick[i]).mean() for i in range(7)])) / 255.0
    yield _row("temporal_flickering", "+-12 brightness flicker = exact formula", f"{manual:.4f}", _fmt(tf),
               tf is not None and abs(tf - manual) < 1e-6)
    yield _row("temporal_flickering", "flickering < steady (+-1 noise)", "flicker < steady",
               f"{_fmt(tf)} < {_fmt(ts)}", tf is not None and ts is not None and tf < ts)
    tm = temporal_flickering(shifted_texture(32, 3.0))
    yield _row("temporal_flickering", "panning 3 px/frame: rejected by static filter", "None", _fmt(tm), tm is None)
    # a still object with per-frame noise (a generator's shimmer): static, and flickers more
    still_disk = disk_clip(24, [12.0] * 8)
    noisy = np.clip(still_disk + np.random.default_rng(5).normal(0, 5, still_disk.shape), 0, 255).astype(np.uint8)
    for s in (1, 8):
        a, b = (still_disk, noisy) if s == 1 else (upscale_video(still_disk, s), upscale_video(noisy, s))
        ta, tb = temporal_flickering(a), temporal_flickering(b)
        yield _row("temporal_flickering", f"{24 * s}px still disk: clean > noisy (sigma 5, kept as static)",
                   "clean > noisy", f"{_fmt(ta)} > {_fmt(tb)}", ta is not None and tb is not None and ta > tb)
        dd = dynamic_degree(b, 8.0)
        yield _row("dynamic_degree", f"{24 * s}px still disk + noise sigma 5 (no motion)", "static", _verdict(dd),
                   not dd)


def motion_smoothness_checks():
    # steady motion vs a dropped frame
    ms_s = motion_smoothness(disk_clip(32, [6 + 1.5 * t for t in range(8)]))
    ms_d = motion_smoothness(disk_clip(32, [6 + 1.5 * t for t in (0, 1, 2, 3, 5, 6, 7, 8)]))
    yield _row("motion_smoothness", "disk 1.5 px/frame: steady > one dropped frame", "steady > dropped",
               f"{ms_s:.4f} > {ms_d:.4f}", ms_s > ms_d)
    ms_s8 = motion_smoothness(upscale_video(disk_clip(24, [6 + t for t in range(8)]), 8))
    ms_d8 = motion_smoothness(upscale_video(disk_clip(24, [6 + t for t in (0, 1, 2, 3, 5, 6, 7, 8)]), 8))
    yield _row("motion_smoothness", "192px (24px x8 nearest) disk 1 px/frame: steady > dropped frame",
               "steady > dropped", f"{ms_s8:.4f} > {ms_d8:.4f}", ms_s8 > ms_d8)
    ms_t = motion_smoothness(shifted_texture(32, 2.0))
    ms_td = motion_smoothness(shifted_texture(32, 2.0, n=9)[[0, 1, 2, 3, 5, 6, 7, 8]])
    yield _row("motion_smoothness", "texture 2 px/frame: steady > one dropped frame", "steady > dropped",
               f"{ms_t:.4f} > {ms_td:.4f}", ms_t > ms_td)
    ms_j = motion_smoothness(shifted_texture(32, 2.0, n=9)[[0, 1, 2, 4, 3, 5, 6, 8]])
    yield _row("motion_smoothness", "texture 2 px/frame: steady > frames out of order", "steady > jittery",
               f"{ms_t:.4f} > {ms_j:.4f}", ms_t > ms_j)
    ms_0 = motion_smoothness(_still())
    yield _row("motion_smoothness", "identical frames", "1.0", _fmt(ms_0), abs(ms_0 - 1.0) < 1e-9)


def consistency_checks():
    pan, other = _pan_and_other()
    cut = np.concatenate([pan[:4], other[4:]])
    scenes = []
    for i in range(8):  # every frame an unrelated scene (random colours, size, place)
        r = np.random.default_rng(100 + i)
        scenes.append(disk_clip(32, [float(r.uniform(8, 24))], bg=tuple(int(c) for c in r.integers(0, 256, 3)),
                                col=tuple(int(c) for c in r.integers(0, 256, 3)), r=float(r.uniform(3, 10)))[0])
    unrelated = np.stack(scenes)
    for name, fn in (("subject_consistency", subject_consistency), ("background_consistency", background_consistency)):
        s_still, s_pan, s_cut, s_unrel = fn(_still()), fn(pan), fn(cut), fn(unrelated)
        yield _row(name, "identical frames", "1.0", _fmt(s_still), abs(s_still - 1.0) < 1e-6)
        yield _row(name, "moving disk > scene cut halfway > every frame a new scene", "pan > cut > unrelated",
                   f"{s_pan:.3f} > {s_cut:.3f} > {s_unrel:.3f}", s_pan > s_cut > s_unrel)


def i2v_checks():
    # a video that starts from its image vs the same video under a different image
    pan, other = _pan_and_other()
    for name, fn in (("i2v_subject", i2v_subject), ("i2v_background", i2v_background)):
        good, bad = fn(pan, pan[0]), fn(pan, other[0])
        yield _row(name, "conditioned on own first frame > on another image", "own > other",
                   f"{good:.3f} > {bad:.3f}", good > bad)


def quality_checks():
    # clean vs degraded copies of the same frames
    clean = disk_clip(48, [12 + 2 * t for t in range(4)], bg=(40, 70, 110), col=(230, 200, 60), r=9)
    clean = np.clip(clean.astype(np.int16) + (shifted_texture(48, 2.0, n=4).astype(np.int16) - 128) // 3,
                    0, 255).astype(np.uint8)
    q_clean = imaging_quality(clean)
    degraded = {
        "gaussian blur sigma 2": np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clean]),
        "gaussian noise sigma 25": np.clip(clean + np.random.default_rng(4).normal(0, 25, clean.shape), 0, 255
                                           ).astype(np.uint8),
        "over-exposed x2.5": np.clip(clean.astype(np.float32) * 2.5, 0, 255).astype(np.uint8),
        "washed out (contrast x0.1)": (clean.astype(np.float32) * 0.1 + 115).astype(np.uint8),
    }
    for name, v in degraded.items():
        q = imaging_quality(v)
        yield _row("imaging_quality", f"clean > {name}", "clean > degraded", f"{q_clean:.3f} > {q:.3f}", q_clean > q)
    yield _row("aesthetic_quality", "no weights", "None (n/a)", _fmt(aesthetic_quality(clean)),
               aesthetic_quality(clean) is None)


GROUPS = (dynamic_degree_checks, temporal_flickering_checks, motion_smoothness_checks, consistency_checks,
          i2v_checks, quality_checks)


@functools.cache
def _rows(group) -> tuple[dict, ...]:
    return tuple(group())


def validation_table() -> list[dict]:
    """Every check's row, grouped by dimension in DIMENSIONS' order (cases keep their order)."""
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    rows = [r for group in GROUPS for r in _rows(group)]
    return sorted(rows, key=lambda r: order[r["dimension"]])


def format_validation_table(rows: list[dict]) -> str:
    """A Markdown table of validation_table() rows (for the README)."""
    lines = ["| dimension | kind | case | expected | got | pass |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dimension']} | {DIMENSIONS[r['dimension']]['kind']} | {r['case']} | {r['expected']} | "
                     f"{r['got']} | {'yes' if r['pass'] else 'NO'} |")
    return "\n".join(lines)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
def test_known_answers(group):
    rows = _rows(group)
    failed = [r for r in rows if not r["pass"]]
    assert rows and not failed, format_validation_table(failed)


def test_every_dimension_has_a_check_and_the_table_formats():
    rows = [r for group in GROUPS for r in _rows(group)]
    assert {r["dimension"] for r in rows} == set(DIMENSIONS)
    assert all(set(r) == {"dimension", "case", "expected", "got", "pass"} for r in rows)
    table = format_validation_table(rows)
    assert table.count("\n") == len(rows) + 1 and table.count("| yes |") == sum(r["pass"] for r in rows)


def main() -> int:
    t0 = time.time()
    rows = validation_table()
    print(format_validation_table(rows))
    print(f"\n{sum(r['pass'] for r in rows)}/{len(rows)} passed in {time.time() - t0:.1f} s")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
