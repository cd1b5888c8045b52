"""The Shapes world: a procedural text+image-to-video world, deterministic by seed.

A clip shows 1-2 coloured shapes (circle / square / triangle, 6 colours) on a plain
dark background, moving as its prompt says (left / right / up / down / still, slow or
fast). The first frame is the image condition. Start positions are drawn from the same
central box whatever the direction, so the first frame never reveals the answer: the
motion has to come from the text.

Geometry (pixel units, pixel centres at i + 0.5):
  * canvas `size` x `size` (default 24), `num_frames` frames (default 8);
  * an object has a radius r in [3.5, 4.5]; its centre starts in the box
    [0.3 size, 0.7 size]^2 and moves by `speed_px` per frame (slow 0.5, fast 1.0);
  * shapes are rendered with 4x4 super-sampling, so sub-pixel motion is visible.

Videos are float tensors in [-1, 1], shape (B, 3, F, H, W) (the diffusers layout).

The **oracle tracker** (`track`) recovers, from any video, each palette colour's
per-frame area, centroid and shape, so generated videos can be checked against
their prompt (`check_clip`); ShapesBench builds on it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from fastlight.errors import InputError

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.12, 0.12),
    "green": (0.12, 0.80, 0.15),
    "blue": (0.15, 0.30, 1.00),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.12, 0.90),
    "cyan": (0.10, 0.90, 0.92),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[float, float]] = {  # unit (dx, dy), y grows downwards
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "still": (0.0, 0.0),
}
SPEEDS_PX: dict[str, float] = {"slowly": 0.5, "quickly": 1.0}
BACKGROUND = (0.12, 0.12, 0.12)
SUPERSAMPLE = 4
GHOST_MARGIN_PX = 2.0  # slack around the object before its colour counts as a ghost
GHOST_MIN_PX = 3  # confident pixels (coverage > 0.5) of a frame's ghost that fail the object


@dataclass(frozen=True)
class ShapeObject:
    """One object of a clip: what it is, where it starts, how it moves."""

    colour: str
    shape: str
    radius_px: float
    x0_px: float  # start centre
    y0_px: float
    direction: str
    speed: str  # "slowly" | "quickly" ("still" objects keep "slowly"; speed unused)

    @property
    def velocity_px(self) -> tuple[float, float]:
        dx, dy = DIRECTIONS[self.direction]
        v = SPEEDS_PX[self.speed]
        return dx * v, dy * v

    def centre_px(self, frame: int) -> tuple[float, float]:
        vx, vy = self.velocity_px
        return self.x0_px + vx * frame, self.y0_px + vy * frame

    def phrase(self) -> str:
        if self.direction == "still":
            return f"a {self.colour} {self.shape} staying still"
        return f"a {self.colour} {self.shape} moving {self.direction} {self.speed}"


@dataclass(frozen=True)
class Clip:
    objects: tuple[ShapeObject, ...]

    @property
    def prompt(self) -> str:
        return " and ".join(o.phrase() for o in self.objects)


@dataclass
class WorldConfig:
    size: int = 24
    num_frames: int = 8
    p_two_objects: float = 0.3
    radius_min_px: float = 3.5
    radius_max_px: float = 4.5
    extra: dict = field(default_factory=dict)


def sample_clip(gen: torch.Generator, world: WorldConfig) -> Clip:
    """Draw one clip description (objects, start, motion) from `gen`."""

    def u(a: float, b: float) -> float:
        return a + (b - a) * torch.rand((), generator=gen).item()

    def pick(seq):
        return seq[int(torch.randint(len(seq), (), generator=gen))]

    num_objects = 2 if torch.rand((), generator=gen).item() < world.p_two_objects else 1
    colours = list(COLOURS)
    lo, hi = world.size * 0.3, world.size * 0.7
    objects: list[ShapeObject] = []
    tries = 0
    while len(objects) < num_objects:
        tries += 1
        if tries % 20 == 0:  # the first object blocks the box: start the clip again
            objects = []
        colour = pick([c for c in colours if c not in {o.colour for o in objects}])
        r = u(world.radius_min_px, world.radius_max_px)
        x, y = u(lo, hi), u(lo, hi)
        # two objects must not overlap in the first frame (the tracker needs to see both)
        if any(math.hypot(x - o.x0_px, y - o.y0_px) < r + o.radius_px + 0.5 for o in objects):
            continue
        objects.append(ShapeObject(colour, pick(SHAPES), r, x, y, pick(list(DIRECTIONS)), pick(list(SPEEDS_PX))))
    return Clip(tuple(objects))


def place_objects(specs: list[dict], gen: torch.Generator, world: WorldConfig | None = None) -> Clip:
    """A clip for given object specs ({colour, shape, direction, speed}, e.g. from a parsed
    prompt) with sizes and start positions drawn from the world's distribution."""
    world = world or WorldConfig()
    lo, hi = world.size * 0.3, world.size * 0.7
    for _ in range(1000):
        objects: list[ShapeObject] = []
        for spec in specs:
            r = world.radius_min_px + (world.radius_max_px - world.radius_min_px) * torch.rand((), generator=gen).item()
            x, y = (lo + (hi - lo) * torch.rand(2, generator=gen)).tolist()
            if any(math.hypot(x - o.x0_px, y - o.y0_px) < r + o.radius_px + 0.5 for o in objects):
                break
            objects.append(ShapeObject(spec["colour"], spec["shape"], r, x, y, spec["direction"], spec["speed"]))
        if len(objects) == len(specs):
            return Clip(tuple(objects))
    raise InputError("could not place the objects without overlap; use fewer objects")


def sample_clips(seed: int, n: int, world: WorldConfig | None = None) -> list[Clip]:
    world = world or WorldConfig()
    gen = torch.Generator().manual_seed(seed)
    return [sample_clip(gen, world) for _ in range(n)]


def _coverage(obj: ShapeObject, cx: torch.Tensor, cy: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Fraction of each pixel covered by `obj`. cx, cy: (F,); xs, ys: (S,) super-sample coordinates.

    Returns (F, H, W) with S = H * SUPERSAMPLE = W * SUPERSAMPLE.
    """
    dx = xs[None, None, :] - cx[:, None, None]  # (F, 1, S)
    dy = ys[None, :, None] - cy[:, None, None]  # (F, S, 1)
    r = obj.radius_px
    if obj.shape == "circle":
        inside = dx**2 + dy**2 <= r**2
    elif obj.shape == "square":
        half = r * 0.85
        inside = (dx.abs() <= half) & (dy.abs() <= half)
    elif obj.shape == "triangle":
        # apex up, base down; centroid at the centre
        top, bottom = -1.1 * r, 0.9 * r
        frac = (dy - top) / (bottom - top)  # 0 at apex, 1 at base
        inside = (frac >= 0) & (frac <= 1) & (dx.abs() <= frac * 1.15 * r)
    else:
        raise InputError(f"unknown shape {obj.shape!r}; use one of {SHAPES}")
    F = cx.shape[0]
    S = xs.shape[0]
    inside = inside.expand(F, S, S).float()
    # (F, S, S) -> (F, H, ss, W, ss) -> mean over the super-samples
    H = S // SUPERSAMPLE
    return inside.view(F, H, SUPERSAMPLE, H, SUPERSAMPLE).mean(dim=(2, 4))


def render(clip: Clip, world: WorldConfig | None = None) -> torch.Tensor:
    """Render a clip to a video in [-1, 1], shape (3, F, H, W)."""
    world = world or WorldConfig()
    size, F = world.size, world.num_frames
    coords = (torch.arange(size * SUPERSAMPLE, dtype=torch.float32) + 0.5) / SUPERSAMPLE
    frames = torch.tensor(BACKGROUND).view(3, 1, 1, 1).expand(3, F, size, size).clone()
    t = torch.arange(F, dtype=torch.float32)
    for obj in clip.objects:  # later objects are drawn on top
        vx, vy = obj.velocity_px
        cov = _coverage(obj, obj.x0_px + vx * t, obj.y0_px + vy * t, coords, coords)  # (F, H, W)
        colour = torch.tensor(COLOURS[obj.colour]).view(3, 1, 1, 1)
        frames = frames * (1 - cov[None]) + colour * cov[None]
    return frames * 2 - 1


def render_batch(clips: list[Clip], world: WorldConfig | None = None) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1]."""
    return torch.stack([render(c, world) for c in clips])


# ----------------------------------------------------------------------------- oracle


@dataclass
class Track:
    """What the oracle sees of one palette colour across a video."""

    colour: str
    area_px: list[float]  # per frame: covered pixels of this colour
    centroid_px: list[tuple[float, float] | None]  # per frame (x, y), None if absent
    shape: list[str | None]  # per frame: circle / square / triangle, None if absent or clipped


def colour_alpha(video: torch.Tensor, colour: str, tol: float = 0.25) -> torch.Tensor:
    """Per-pixel coverage of `colour`, (F, H, W), from a video (3, F, H, W) in [-1, 1].

    A pixel is modelled as `bg + a * (colour - bg)` (anti-aliased edge); pixels whose
    residual from that line exceeds `tol` (in [0, 1] units) belong to something else.
    """
    rgb = (video.float().clamp(-1, 1) + 1) / 2  # (3, F, H, W) in [0, 1]
    bg = torch.tensor(BACKGROUND).view(3, 1, 1, 1)
    col = torch.tensor(COLOURS[colour]).view(3, 1, 1, 1)
    d = col - bg
    a = ((rgb - bg) * d).sum(0) / (d * d).sum()
    resid = (rgb - bg - a[None] * d).norm(dim=0)
    return torch.where(resid < tol, a.clamp(0, 1), torch.zeros_like(a))


def _classify_shape(alpha: torch.Tensor) -> str | None:
    """circle / square / triangle from a coverage map (H, W) by how much of its soft bounding box it fills.

    Soft box = (sum over columns of the column's max coverage) x (same over rows), which
    keeps sub-pixel extents; ideal fills: square 1.0, circle pi/4 = 0.785, triangle ~0.6.
    """
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    if len(xs) < 6:
        return None
    H, W = alpha.shape
    if xs.min() == 0 or ys.min() == 0 or xs.max() == W - 1 or ys.max() == H - 1:
        return None  # clipped by the frame edge: shape unknowable
    # faint pixels are often another object's anti-aliased fringe whose colour projects onto ours
    alpha = torch.where(alpha > 0.35, alpha, torch.zeros_like(alpha))
    box = float(alpha.max(0).values.sum() * alpha.max(1).values.sum())
    fill = float(alpha.sum()) / box
    if fill > 0.9:
        return "square"
    if fill > 0.7:
        return "circle"
    return "triangle"


def track(video: torch.Tensor, colours: list[str] | None = None, min_area_px: float = 4.0) -> dict[str, Track]:
    """Oracle tracker: per palette colour, per frame area / centroid / shape. video: (3, F, H, W)."""
    out: dict[str, Track] = {}
    F, H, W = video.shape[1:]
    ys = torch.arange(H, dtype=torch.float32).view(H, 1) + 0.5
    xs = torch.arange(W, dtype=torch.float32).view(1, W) + 0.5
    for colour in colours or list(COLOURS):
        a = colour_alpha(video, colour)
        areas, cents, shapes = [], [], []
        for f in range(F):
            area = float(a[f].sum())
            areas.append(area)
            if area < min_area_px:
                cents.append(None)
                shapes.append(None)
                continue
            cents.append((float((a[f] * xs).sum() / area), float((a[f] * ys).sum() / area)))
            shapes.append(_classify_shape(a[f]))
        out[colour] = Track(colour, areas, cents, shapes)
    return out


def _extent_px(obj: ShapeObject, world: WorldConfig) -> float:
    """Largest distance from the object's centre of a pixel centre it covers > 0.5 (unclipped)."""
    wide = (torch.arange(-world.size * SUPERSAMPLE, 2 * world.size * SUPERSAMPLE, dtype=torch.float32) + 0.5) / SUPERSAMPLE
    cov = _coverage(obj, torch.tensor([obj.x0_px]), torch.tensor([obj.y0_px]), wide, wide)[0]  # (3H, 3W)
    ys, xs = torch.nonzero(cov > 0.5, as_tuple=True)
    px = xs.float() + 0.5 - world.size  # pixel centres in canvas coordinates
    py = ys.float() + 0.5 - world.size
    return float(torch.hypot(px - obj.x0_px, py - obj.y0_px).max())


def ghost_pixels(alpha: torch.Tensor, ideal_alpha: torch.Tensor, extent_px: float,
                 margin_px: float = GHOST_MARGIN_PX) -> int:
    """Confident pixels (coverage > 0.5) of one colour in one frame that lie away from the object.

    alpha, ideal_alpha: (H, W) coverage of the colour in the generated and the ideal frame. The
    object is the connected component (8-neighbour) that overlaps the ideal object most (the
    largest one if none does); its tracked position is that component's centroid. A pixel is a
    ghost when it is farther than `extent_px + margin_px` from the tracked position AND farther
    than `margin_px` from the ideal object: a duplicate, a wrap-around copy at the opposite border
    or a smear. The ideal exemption keeps an object split in two by the other object whole.
    """
    mask = (alpha > 0.5).numpy()
    if not mask.any():
        return 0
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    ideal = (ideal_alpha > 0.5).numpy()
    near_ideal = (ndimage.distance_transform_edt(~ideal) <= margin_px) if ideal.any() else np.zeros_like(mask)
    overlap = np.bincount(labels[near_ideal], minlength=n + 1)[1:]
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    main = 1 + int(overlap.argmax() if overlap.max() > 0 else sizes.argmax())
    a = alpha.numpy() * (labels == main)
    ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5  # pixel centres (y, x)
    cx, cy = float((a * xs).sum() / a.sum()), float((a * ys).sum() / a.sum())
    far = np.hypot(xs - cx, ys - cy) > extent_px + margin_px
    return int((mask & far & ~near_ideal).sum())


def classify_motion(dx_px: float, dy_px: float, still_px: float = 1.25) -> str:
    """Direction word for a total displacement (frame 0 -> last frame)."""
    if math.hypot(dx_px, dy_px) < still_px:
        return "still"
    if abs(dx_px) >= abs(dy_px):
        return "right" if dx_px > 0 else "left"
    return "down" if dy_px > 0 else "up"


def _full_area_px(obj: ShapeObject, world: WorldConfig) -> float:
    """The object's area in pixels if nothing clipped or covered it."""
    wide = (torch.arange(-world.size * SUPERSAMPLE, 2 * world.size * SUPERSAMPLE, dtype=torch.float32) + 0.5) / SUPERSAMPLE
    return float(_coverage(obj, torch.tensor([obj.x0_px]), torch.tensor([obj.y0_px]), wide, wide).sum())


def check_clip(video: torch.Tensor, clip: Clip, world: WorldConfig | None = None) -> dict:
    """Check a generated video (3, F, H, W) against its clip description with the oracle.

    Ground truth comes from the ideal rendering of the same clip, so frame edges and one
    object covering the other are accounted for: `visible` = ideal visible area of the
    object's colour / its full area. Per object:
      * `colour_kept`: fraction of the frames with visible >= 0.6 in which the tracked area of
        the object's colour is within [0.5, 2] x the ideal visible area;
      * `direction`: motion word of the centroid path over the frames with visible >= 0.98
        (>= 0.6 if fewer than two; extrapolated to the whole clip), `direction_ok`;
      * `speed_ratio`: measured / prompted displacement (moving objects);
      * `shape`: majority of the tracker's shape over those frames where no other object is
        near, `shape_ok` against the prompt; `size_ratio`: tracked / ideal area on those frames;
      * `ghost_px`: per generated frame (1..F-1; frame 0 is the given image) the pixels of the
        object's colour away from it (`ghost_pixels`: duplicates, wrap-around copies, smears);
        `ghost`: some frame has >= GHOST_MIN_PX of them, which fails the object (`ok` False).
    The clip's `ghost` is True when any object has one: the clip fails.
    """
    world = world or WorldConfig()
    F = video.shape[1]
    tracks = track(video, [o.colour for o in clip.objects])
    ideal = render(clip, world)
    results = []
    for obj in clip.objects:
        tr = tracks[obj.colour]
        ideal_alpha = colour_alpha(ideal, obj.colour)  # (F, H, W)
        ideal_area = ideal_alpha.sum(dim=(1, 2)).tolist()  # (F,)
        gen_alpha = colour_alpha(video, obj.colour)
        extent = _extent_px(obj, world)
        ghost_px = [ghost_pixels(gen_alpha[f], ideal_alpha[f], extent) for f in range(1, F)]
        ghost = any(g >= GHOST_MIN_PX for g in ghost_px)
        full = _full_area_px(obj, world)
        visible = [a / full for a in ideal_area]
        judged = [f for f in range(F) if visible[f] >= 0.6]
        kept = [0.5 * ideal_area[f] <= tr.area_px[f] <= 2.0 * ideal_area[f] for f in judged]
        clean = [f for f in range(F) if visible[f] >= 0.98 and tr.centroid_px[f] is not None]
        if len(clean) < 2:  # covered by the other object most of the clip: use what is seen
            clean = [f for f in range(F) if visible[f] >= 0.6 and tr.centroid_px[f] is not None]
        if len(clean) >= 2:
            (x_a, y_a), (x_b, y_b) = tr.centroid_px[clean[0]], tr.centroid_px[clean[-1]]
            scale = (F - 1) / (clean[-1] - clean[0])  # extrapolate to the whole clip
            dx, dy = (x_b - x_a) * scale, (y_b - y_a) * scale
            direction = classify_motion(dx, dy)
        else:
            dx = dy = float("nan")
            direction = "lost"
        expected = SPEEDS_PX[obj.speed] * (F - 1)
        speed_ratio = math.hypot(dx, dy) / expected if obj.direction != "still" and direction != "lost" else None
        # shape only where no other object touches this one (mixed edge pixels blur the fill)
        apart = [f for f in clean if all(
            math.dist(obj.centre_px(f), o.centre_px(f)) >= 1.3 * (obj.radius_px + o.radius_px) + 1
            for o in clip.objects if o is not obj)]
        shapes_seen = [tr.shape[f] for f in (apart or clean) if tr.shape[f] is not None]
        shape = max(set(shapes_seen), key=shapes_seen.count) if shapes_seen else None
        size = [tr.area_px[f] / ideal_area[f] for f in clean]
        results.append(
            {
                "colour": obj.colour,
                "colour_kept": sum(kept) / max(len(kept), 1),
                "direction": direction,
                "direction_ok": direction == obj.direction,
                "speed_ratio": speed_ratio,
                "shape": shape,
                "shape_ok": shape == obj.shape,
                "size_ratio": sum(size) / len(size) if size else None,
                "ghost_px": ghost_px,
                "ghost": ghost,
                "ok": direction == obj.direction and not ghost,
            }
        )
    return {"prompt": clip.prompt, "objects": results, "ghost": any(o["ghost"] for o in results)}
