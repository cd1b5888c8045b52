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

**Named worlds** (`WORLDS`, `world_from_name`, `WorldConfig.to_dict / from_dict`):

  * `v1` = `WorldConfig()`: the world above (24 px, 8 frames, 1-2 objects in a central box, two
    speeds). The shipped pixel-space teacher and `make demo` live in it; its clips, prompts and
    encodings are pinned byte for byte (tests/shapes/test_world_v1_pinned.py).
  * `v2` (`V2`): the harder, open world the latent-space teacher is trained in (`WorldConfig` of
    `name="v2"`; its numbers and why are in `V2`'s comments): 64 x 64, 17 frames, 1-3 objects, three
    speeds, objects entering and leaving the frame; judged by `check_clip_v2` (speed ratio, motion
    smoothness, static objects, ghosts after an object left).

A model's fastlight.json stores `world = WorldConfig.to_dict()`, the world's name under the key
`world` (the `shapes` data source's option of that name), so the meta is also its data source's
defaults (fastlight/train/batches.py `recipe_source`); `from_dict` reads it back, and reads the
legacy `{size, num_frames}` of the shipped teacher as v1.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
from scipy import ndimage

from fastlight.errors import ConfigError, InputError

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
SPEEDS_PX: dict[str, float] = {"slowly": 0.5, "quickly": 1.0}  # v1's speeds; a world's own: WorldConfig.speeds_px
SPEED_WORDS = ("slowly", "quickly", "steadily")  # every speed word any world uses, in text-token slot order
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
    speed: str  # "slowly" | "quickly" (| "steadily" in v2); "still" objects keep "slowly"; speed unused
    speed_px: float | None = None  # px per frame of `speed` in the object's world; None: v1's SPEEDS_PX

    @property
    def speed_px_per_frame(self) -> float:
        return SPEEDS_PX[self.speed] if self.speed_px is None else self.speed_px

    @property
    def velocity_px(self) -> tuple[float, float]:
        dx, dy = DIRECTIONS[self.direction]
        v = self.speed_px_per_frame
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


WORLD_NAMES = ("v1", "v2")  # the rule sets: v1 central box (the shipped teacher's), v2 open world
MAX_PLACEMENT_TRIES = 10_000  # rejection sampling gives up (ConfigError) after this many draws


@dataclass
class WorldConfig:
    """The numbers of a Shapes world. The first six fields are v1's (their defaults are v1);
    `name` picks the rules (how clips are drawn and judged); the rest matter in v2 only, except
    `speeds_px` and `text_velocity_scale`, which both worlds read."""

    size: int = 24
    num_frames: int = 8
    p_two_objects: float = 0.3  # v1: P(two objects); v2 uses object_probs
    radius_min_px: float = 3.5
    radius_max_px: float = 4.5
    extra: dict = field(default_factory=dict)
    name: str = "v1"
    object_probs: tuple[float, ...] | None = None  # P(1), P(2), ... objects (v2); None: v1's (1 - p, p)
    speeds_px: dict[str, float] = field(default_factory=lambda: dict(SPEEDS_PX))
    start_margin_px: float = 2.0  # v2: start centres uniform in [margin, size - margin]^2
    min_first_visible: float = 0.35  # v2: each object shows >= this fraction of its area in frame 0
    text_velocity_scale: float = 2.0  # text token's velocity features = scale x px/frame (v1: "x2")

    def __post_init__(self):
        if self.name not in WORLD_NAMES:
            raise ConfigError(f"unknown Shapes world rules {self.name!r}; use one of {', '.join(WORLD_NAMES)}")
        if self.object_probs is not None:
            self.object_probs = tuple(float(p) for p in self.object_probs)
            if not self.object_probs or min(self.object_probs) < 0 or abs(sum(self.object_probs) - 1) > 1e-6:
                raise ConfigError(f"object_probs must be probabilities of 1, 2, ... objects summing to 1, "
                                  f"got {self.object_probs}")
        if len(self.object_probs or ()) > len(COLOURS):
            raise ConfigError(f"at most {len(COLOURS)} objects (one per colour), got object_probs {self.object_probs}")
        if not 0 < self.radius_min_px <= self.radius_max_px:
            raise ConfigError(f"radii must satisfy 0 < radius_min_px <= radius_max_px, got "
                              f"{self.radius_min_px}, {self.radius_max_px}")
        unknown = sorted(set(self.speeds_px) - set(SPEED_WORDS))
        if unknown or not self.speeds_px or min(self.speeds_px.values()) <= 0:
            raise ConfigError(f"speeds_px must map speed words of {SPEED_WORDS} to px/frame > 0, got {self.speeds_px}")

    @property
    def max_objects(self) -> int:
        """Objects a clip may hold: the text encoder's token count for this world."""
        return len(self.object_probs) if self.object_probs is not None else 2

    @property
    def count_probs(self) -> tuple[float, ...]:
        return self.object_probs if self.object_probs is not None else (1 - self.p_two_objects, self.p_two_objects)

    def to_dict(self) -> dict:
        """JSON-ready fields; the rules' name under `world` (the shapes data source's option)."""
        d = asdict(self)
        d["world"] = d.pop("name")
        if d["object_probs"] is not None:
            d["object_probs"] = list(d["object_probs"])
        if not d["extra"]:
            d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        """`to_dict`'s inverse. Missing fields come from the named world (v1 when unnamed: the shipped
        teacher's `{size, num_frames}`); an unknown key is a ConfigError."""
        d = dict(d)
        name = d.pop("world", None) or d.pop("name", None) or "v1"
        known = {f.name for f in fields(cls)} - {"name"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"Shapes world has no field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return replace(world_from_name(name), **d)


# v2, the open world of the latent-space teacher. Why these numbers:
#   * 64 x 64 and 17 = 1 + 4 x 4 frames: the shipped Shapes AutoencoderKLWan compresses 8x in space
#     and 4x in time, so a clip is a (16, 5, 8, 8) latent; 9 = 1 + 4 x 2 frames also works
#     (`world_from_name("v2", num_frames=9)`).
#   * radius 7-10 px: an object spans 2-2.5 latent cells (8 px each), large enough for the VAE to keep
#     its colour and shape, small enough that three fit in frame 0 with room to move.
#   * 1-3 objects with P = 0.4 / 0.35 / 0.25: most clips still have one or two objects to learn from,
#     a quarter tests three-way binding (three text tokens).
#   * speeds 1 / 2 / 3.5 px per frame (16 / 32 / 56 px over the clip): neighbouring levels differ by
#     >= 1.75x, far outside the oracle's 10% speed tolerance, so a mix-up is never borderline; the
#     slowest still moves 16 px (a latent cell every 8 frames), well above the still threshold; the
#     fastest crosses most of the canvas, so objects do leave it.
#   * start centres uniform in [2, 62]^2 whatever the direction, so objects may start partly outside
#     the frame (up to ~40% of their area), enter it or leave it; each shows >= 35% of its area in
#     frame 0 (a corner start shows less and is redrawn: a rule on position only, so the first
#     frame stays silent about the direction), which pins its position for the model and the oracle.
#     Objects do not overlap in frame 0; later they may cross (the later one is drawn on top):
#     rejecting crossing paths would tie the start positions to the directions.
#   * text velocity features 0.6 x px/frame (0.6 / 1.2 / 2.1): the same range as v1's (1 / 2).
V2 = WorldConfig(size=64, num_frames=17, radius_min_px=7.0, radius_max_px=10.0, name="v2",
                 object_probs=(0.4, 0.35, 0.25), speeds_px={"slowly": 1.0, "steadily": 2.0, "quickly": 3.5},
                 start_margin_px=2.0, min_first_visible=0.35, text_velocity_scale=0.6)
WORLDS: dict[str, WorldConfig] = {"v1": WorldConfig(), "v2": V2}


def world_from_name(name: str, **overrides) -> WorldConfig:
    """A copy of the named world (`WORLDS`), with `overrides` of its fields (e.g. num_frames=9)."""
    if name not in WORLDS:
        raise ConfigError(f"unknown Shapes world {name!r}; use one of {', '.join(WORLDS)}")
    base = WORLDS[name]
    return replace(base, speeds_px=dict(base.speeds_px), extra=dict(base.extra), **overrides)


def _cannot_place(world: WorldConfig, num_objects: int) -> ConfigError:
    return ConfigError(f"could not place {num_objects} non-overlapping objects of radius {world.radius_min_px}-"
                       f"{world.radius_max_px} px in a {world.size} px {world.name} frame after "
                       f"{MAX_PLACEMENT_TRIES} tries; use a bigger size, smaller radii or fewer objects")


def sample_clip(gen: torch.Generator, world: WorldConfig) -> Clip:
    """Draw one clip description (objects, start, motion) from `gen` (the world's rules)."""
    if world.name == "v2":
        return _sample_clip_v2(gen, world)
    return _sample_clip_v1(gen, world)


def _sample_clip_v1(gen: torch.Generator, world: WorldConfig) -> Clip:
    """v1: 1-2 objects in the central box; the draws (and so every clip) are the shipped world's."""

    def u(a: float, b: float) -> float:
        return a + (b - a) * torch.rand((), generator=gen).item()

    def pick(seq):
        return seq[int(torch.randint(len(seq), (), generator=gen))]

    num_objects = 2 if torch.rand((), generator=gen).item() < world.p_two_objects else 1
    colours = list(COLOURS)
    speeds = list(world.speeds_px)
    lo, hi = world.size * 0.3, world.size * 0.7
    objects: list[ShapeObject] = []
    tries = 0
    while len(objects) < num_objects:
        tries += 1
        if tries > MAX_PLACEMENT_TRIES:
            raise _cannot_place(world, num_objects)
        if tries % 20 == 0:  # the first object blocks the box: start the clip again
            objects = []
        colour = pick([c for c in colours if c not in {o.colour for o in objects}])
        r = u(world.radius_min_px, world.radius_max_px)
        x, y = u(lo, hi), u(lo, hi)
        # two objects must not overlap in the first frame (the tracker needs to see both)
        if any(math.hypot(x - o.x0_px, y - o.y0_px) < r + o.radius_px + 0.5 for o in objects):
            continue
        shape, direction, speed = pick(SHAPES), pick(list(DIRECTIONS)), pick(speeds)  # the shipped draw order
        objects.append(ShapeObject(colour, shape, r, x, y, direction, speed, _speed_px(world, speed)))
    return Clip(tuple(objects))


def _speed_px(world: WorldConfig, speed: str) -> float | None:
    """The object's own px/frame, or None where it is v1's (keeps v1 objects as they were)."""
    v = world.speeds_px[speed]
    return None if SPEEDS_PX.get(speed) == v else v


def first_frame_visible(shape: str, radius_px: float, x_px: float, y_px: float, size: int) -> float:
    """Fraction of an object's area inside the size x size canvas (1/4 px grid over its bounding box)."""
    step = 0.25
    half = 1.2 * radius_px
    offs = torch.arange(-half, half + step / 2, step)
    inside = _inside(shape, radius_px, offs[None, :], offs[:, None])  # (S, S): dx along columns
    px, py = x_px + offs[None, :], y_px + offs[:, None]
    in_canvas = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    total = int(inside.sum())
    return float((inside & in_canvas).sum()) / max(total, 1)


def _sample_clip_v2(gen: torch.Generator, world: WorldConfig) -> Clip:
    """v2: 1-3 objects anywhere in [margin, size - margin]^2 (partly outside at a border is fine).
    Every draw of an attempt happens whether or not it is used, and the rejection looks at positions
    and sizes only, so the start positions do not depend on the directions."""
    probs = torch.tensor(world.count_probs, dtype=torch.float64)
    num_objects = 1 + int(torch.multinomial(probs, 1, generator=gen))
    lo, hi = world.start_margin_px, world.size - world.start_margin_px
    speeds = list(world.speeds_px)
    for _ in range(MAX_PLACEMENT_TRIES):
        draws = torch.rand(num_objects, 7, generator=gen, dtype=torch.float64).tolist()
        objects: list[ShapeObject] = []
        free = list(COLOURS)
        for r_u, x_u, y_u, c_u, s_u, d_u, v_u in draws:
            colour = free.pop(int(c_u * len(free)))
            shape = SHAPES[int(s_u * len(SHAPES))]
            r = world.radius_min_px + (world.radius_max_px - world.radius_min_px) * r_u
            x, y = lo + (hi - lo) * x_u, lo + (hi - lo) * y_u
            direction = list(DIRECTIONS)[int(d_u * len(DIRECTIONS))]
            speed = speeds[int(v_u * len(speeds))]
            objects.append(ShapeObject(colour, shape, r, x, y, direction, speed, world.speeds_px[speed]))
        if all(_placeable(o, objects[:i], world) for i, o in enumerate(objects)):
            return Clip(tuple(objects))
    raise _cannot_place(world, num_objects)


def _placeable(obj: ShapeObject, earlier: list[ShapeObject], world: WorldConfig) -> bool:
    """v2's frame-0 rules: apart from the earlier objects (1 px gap), enough of it on the canvas."""
    if any(math.hypot(obj.x0_px - o.x0_px, obj.y0_px - o.y0_px) < obj.radius_px + o.radius_px + 1 for o in earlier):
        return False
    return first_frame_visible(obj.shape, obj.radius_px, obj.x0_px, obj.y0_px, world.size) >= world.min_first_visible


def place_objects(specs: list[dict], gen: torch.Generator, world: WorldConfig | None = None) -> Clip:
    """A clip for given object specs ({colour, shape, direction, speed}, e.g. from a parsed
    prompt) with sizes and start positions drawn from the world's distribution."""
    world = world or WorldConfig()
    if world.name == "v2":
        return _place_objects_v2(specs, gen, world)
    lo, hi = world.size * 0.3, world.size * 0.7
    for _ in range(1000):
        objects: list[ShapeObject] = []
        for spec in specs:
            r = world.radius_min_px + (world.radius_max_px - world.radius_min_px) * torch.rand((), generator=gen).item()
            x, y = (lo + (hi - lo) * torch.rand(2, generator=gen)).tolist()
            if any(math.hypot(x - o.x0_px, y - o.y0_px) < r + o.radius_px + 0.5 for o in objects):
                break
            objects.append(ShapeObject(spec["colour"], spec["shape"], r, x, y, spec["direction"], spec["speed"],
                                       _speed_px(world, spec["speed"])))
        if len(objects) == len(specs):
            return Clip(tuple(objects))
    raise InputError("could not place the objects without overlap; use fewer objects")


def _place_objects_v2(specs: list[dict], gen: torch.Generator, world: WorldConfig) -> Clip:
    lo, hi = world.start_margin_px, world.size - world.start_margin_px
    for _ in range(MAX_PLACEMENT_TRIES):
        draws = torch.rand(len(specs), 3, generator=gen, dtype=torch.float64).tolist()
        objects = [ShapeObject(spec["colour"], spec["shape"],
                               world.radius_min_px + (world.radius_max_px - world.radius_min_px) * r_u,
                               lo + (hi - lo) * x_u, lo + (hi - lo) * y_u, spec["direction"], spec["speed"],
                               world.speeds_px[spec["speed"]])
                   for spec, (r_u, x_u, y_u) in zip(specs, draws)]
        if all(_placeable(o, objects[:i], world) for i, o in enumerate(objects)):
            return Clip(tuple(objects))
    raise InputError(f"could not place {len(specs)} objects without overlap in the {world.size} px frame; "
                     "use fewer objects")


def sample_clips(seed: int, n: int, world: WorldConfig | None = None) -> list[Clip]:
    world = world or WorldConfig()
    gen = torch.Generator().manual_seed(seed)
    return [sample_clip(gen, world) for _ in range(n)]


def _inside(shape: str, r: float, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Whether offsets (dx, dy) from an object's centre lie inside it (broadcasting)."""
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        half = r * 0.85
        return (dx.abs() <= half) & (dy.abs() <= half)
    if shape == "triangle":
        # apex up, base down
        top, bottom = -1.1 * r, 0.9 * r
        frac = (dy - top) / (bottom - top)  # 0 at apex, 1 at base
        return (frac >= 0) & (frac <= 1) & (dx.abs() <= frac * 1.15 * r)
    raise InputError(f"unknown shape {shape!r}; use one of {SHAPES}")


def _coverage(obj: ShapeObject, cx: torch.Tensor, cy: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Fraction of each pixel covered by `obj`. cx, cy: (F,); xs, ys: (S,) super-sample coordinates.

    Returns (F, H, W) with S = H * SUPERSAMPLE = W * SUPERSAMPLE.
    """
    dx = xs[None, None, :] - cx[:, None, None]  # (F, 1, S)
    dy = ys[None, :, None] - cy[:, None, None]  # (F, S, 1)
    inside = _inside(obj.shape, obj.radius_px, dx, dy)
    F = cx.shape[0]
    S = xs.shape[0]
    inside = inside.expand(F, S, S).float()
    # (F, S, S) -> (F, H, ss, W, ss) -> mean over the super-samples
    H = S // SUPERSAMPLE
    return inside.view(F, H, SUPERSAMPLE, H, SUPERSAMPLE).mean(dim=(2, 4))


def render(clip: Clip, world: WorldConfig | None = None, paths: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Render a clip to a video in [-1, 1], shape (3, F, H, W). `paths` {object index: (F, 2) centres}
    replaces those objects' straight paths (the oracle's tests draw jittery or stalled motion)."""
    world = world or WorldConfig()
    size, F = world.size, world.num_frames
    coords = (torch.arange(size * SUPERSAMPLE, dtype=torch.float32) + 0.5) / SUPERSAMPLE
    frames = torch.tensor(BACKGROUND).view(3, 1, 1, 1).expand(3, F, size, size).clone()
    t = torch.arange(F, dtype=torch.float32)
    for i, obj in enumerate(clip.objects):  # later objects are drawn on top
        vx, vy = obj.velocity_px
        if paths and i in paths:
            cx, cy = paths[i][:, 0].float(), paths[i][:, 1].float()
        else:
            cx, cy = obj.x0_px + vx * t, obj.y0_px + vy * t
        cov = _coverage(obj, cx, cy, coords, coords)  # (F, H, W)
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

    A v2 world's clips are judged by `check_clip_v2` (objects leave the frame; speed, smoothness).
    """
    world = world or WorldConfig()
    if world.name == "v2":
        return check_clip_v2(video, clip, world)
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


# ----------------------------------------------------------------------------- the v2 oracle
V2_JUDGE_VISIBLE = 0.3  # colour kept is judged on frames where the ideal clip shows >= 30% of the object
V2_COUNT_VISIBLE = 0.5  # ... and an object must be seen in frames where the ideal shows >= half of it
V2_MIN_FIT_PX = 8.0  # coverage (px) an object needs in a frame for its position to be fitted
V2_MIN_FIT_INFO = 0.5  # ... and its fit sees edges facing every way (J^T J's smaller eigenvalue, ~ edge px)
V2_MIN_UNBLOCKED = 0.5  # a frame judges motion when >= half of the object's on-canvas part is not hidden
STILL_FRACTION = 0.35  # measured speed < 0.35 x the world's slowest speed reads "still"
ABRUPT_PX = 1.0  # a frame-to-frame step off the object's own mean velocity by more than this: abrupt
SPEED_TOLERANCE = 0.10  # |speed ratio - 1| <= 10%: the speed bar
_EIGHT = np.ones((3, 3), dtype=bool)


def _signed_distance(shape: str, r: float, dx: torch.Tensor, dy: torch.Tensor):
    """Approximate signed distance (px, > 0 outside) of offsets (dx, dy) from a shape's outline, and
    its gradient wrt (dx, dy). Edges are exact; corners are approximate (the fit only needs edges)."""
    if shape == "circle":
        rho = torch.hypot(dx, dy).clamp_min(1e-6)
        return rho - r, dx / rho, dy / rho
    if shape == "square":
        half = 0.85 * r
        a, b = dx.abs() - half, dy.abs() - half
        use_a = a >= b
        zero = torch.zeros_like(dx)
        return torch.where(use_a, a, b), torch.where(use_a, torch.sign(dx), zero), torch.where(use_a, zero, torch.sign(dy))
    if shape == "triangle":  # base dy <= 0.9 r; sides |dx| <= 0.575 (dy + 1.1 r) (world._inside)
        k = math.hypot(1.0, 0.575)
        base, side = dy - 0.9 * r, (dx.abs() - 0.575 * (dy + 1.1 * r)) / k
        use_base = base >= side
        return (torch.where(use_base, base, side), torch.where(use_base, torch.zeros_like(dx), torch.sign(dx) / k),
                torch.where(use_base, torch.ones_like(dy), torch.full_like(dy, -0.575 / k)))
    raise InputError(f"unknown shape {shape!r}; use one of {SHAPES}")


def _template(obj: ShapeObject, centres: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, K: int,
              band: float = 1.0):
    """Soft coverage (F, K, K) of `obj` at centres (F, 2) on the K x K windows whose top-left pixels are
    (x0, y0) (F,), and its derivative wrt the centre (2 x (F, K, K))."""
    ar = torch.arange(K, dtype=torch.float32) + 0.5
    dx = (x0.view(-1, 1, 1) + ar.view(1, 1, K)) - centres[:, 0].view(-1, 1, 1)
    dy = (y0.view(-1, 1, 1) + ar.view(1, K, 1)) - centres[:, 1].view(-1, 1, 1)
    sd, gx, gy = _signed_distance(obj.shape, obj.radius_px, dx.expand(-1, K, K), dy.expand(-1, K, K))
    t = 0.5 - sd / band
    on_edge = ((t >= 0) & (t <= 1)).float() / band  # inclusive: an edge on a pixel boundary still pulls
    return t.clamp(0, 1), gx * on_edge, gy * on_edge


def _windows(obj: ShapeObject, alpha: torch.Tensor, weight: torch.Tensor, init: torch.Tensor):
    """K x K crops of alpha and weight (F, K, K) around each frame's initial centre (outside the canvas:
    weight 0), their top-left pixels x0, y0 (F,) and K."""
    F, H, W = alpha.shape
    K = 2 * int(math.ceil(1.2 * obj.radius_px + 7)) + 1
    pad = K
    a = torch.nn.functional.pad(alpha, (pad, pad, pad, pad))
    w = torch.nn.functional.pad(weight, (pad, pad, pad, pad))
    x0 = init[:, 0].floor().long() - K // 2
    y0 = init[:, 1].floor().long() - K // 2
    ar = torch.arange(K)
    rows = (y0 + pad).clamp(0, H + pad).view(-1, 1, 1) + ar.view(1, K, 1)
    cols = (x0 + pad).clamp(0, W + pad).view(-1, 1, 1) + ar.view(1, 1, K)
    fi = torch.arange(F).view(-1, 1, 1)
    return a[fi, rows, cols], w[fi, rows, cols], x0.float(), y0.float(), K


def fit_centres(alpha: torch.Tensor, weight: torch.Tensor, obj: ShapeObject, init: torch.Tensor,
                bands: tuple[float, ...] = (4.0, 4.0, 4.0, 3.0, 3.0, 2.0, 2.0, 1.5, 1.0, 1.0, 1.0)) -> tuple[torch.Tensor, ...]:
    """Centres (F, 2) that make the object's template match `alpha` (F, H, W) in least squares over the
    pixels `weight` (F, H, W) keeps (the canvas minus other objects' pixels): Gauss-Newton from `init`
    on a window around it, coarse-to-fine edges. The template knows the shape and radius, so a centre
    outside the canvas (an object half out of the frame) is found from the part that is in it.
    Also returns (F,) the template's coverage at the fit over the kept pixels and over the canvas,
    and the fit's information in its worst direction (the smaller eigenvalue of J^T J, ~ edge pixels
    facing that way: ~0 when only one straight edge is seen and the fit may slide along it)."""
    a, w, x0, y0, K = _windows(obj, alpha, weight, init.float())
    canvas = _windows(obj, alpha, torch.ones_like(weight), init.float())[1]
    c = init.clone().float()
    for band in bands:
        t, jx, jy = _template(obj, c, x0, y0, K, band)
        jx, jy = jx * w, jy * w
        r = (a - t) * w
        saa, sab, sbb = (jx * jx).sum((1, 2)), (jx * jy).sum((1, 2)), (jy * jy).sum((1, 2))
        gx, gy = (jx * r).sum((1, 2)), (jy * r).sum((1, 2))
        eps = 1e-3 * (saa + sbb) + 1e-6
        det = (saa + eps) * (sbb + eps) - sab * sab
        step = torch.stack([((sbb + eps) * gx - sab * gy) / det, ((saa + eps) * gy - sab * gx) / det], 1)
        c = c + step.clamp(-2.0, 2.0)
    t = _template(obj, c, x0, y0, K)[0]
    jx, jy = (j * w for j in _template(obj, c, x0, y0, K, 1.5)[1:])  # a 1.5 px band: edges on pixel boundaries count
    saa, sab, sbb = (jx * jx).sum((1, 2)), (jx * jy).sum((1, 2)), (jy * jy).sum((1, 2))
    # the weaker eigenvalue of J^T J: how well the edges seen pin the centre in its worst direction
    info = (saa + sbb) / 2 - torch.sqrt(((saa - sbb) / 2) ** 2 + sab ** 2)
    return c, (t * w).sum((1, 2)), (t * canvas).sum((1, 2)), info


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=_EIGHT)


def _pick_main(labels: np.ndarray, n: int, near_ideal: np.ndarray, last: tuple[float, float] | None,
               reach_px: float) -> int:
    """The component (1..n) that is the object: the one overlapping the ideal object most; else the one
    continuing its track (a pixel within `reach_px` of its last fitted centre), nearest first; else 0."""
    if n == 0:
        return 0
    overlap = np.bincount(labels[near_ideal], minlength=n + 1)[1:]
    if overlap.max() > 0:
        return 1 + int(overlap.argmax())
    if last is None:
        return 0
    ys, xs = np.nonzero(labels)
    dist = np.hypot(xs + 0.5 - last[0], ys + 0.5 - last[1])
    best = np.full(n + 1, np.inf)
    np.minimum.at(best, labels[ys, xs], dist)
    k = int(best[1:].argmin())
    return 1 + k if best[1 + k] <= reach_px else 0


@dataclass
class _Seen:
    """What the v2 oracle saw of one object, per frame."""

    centre: list[tuple[float, float] | None]  # fitted centre where it can judge motion (seen, not hidden)
    position: list[tuple[float, float] | None]  # fitted centre wherever seen (>= V2_MIN_FIT_PX of coverage)
    area: list[float]  # coverage of the object's component(s)
    expected_area: list[float]  # the template's coverage at the fitted centre over the pixels it may use
    ghost_px: list[int]  # frames 1..F-1


def _see_object(obj: ShapeObject, gen_alpha: torch.Tensor, ideal_alpha: torch.Tensor, others: torch.Tensor,
                extent: float, world: WorldConfig) -> _Seen:
    """Track one object through a video: per frame pick its component, fit its centre, count ghosts.
    gen_alpha, ideal_alpha: (F, H, W) coverage of its colour; others: (F, H, W) bool, pixels of the
    clip's other colours (excluded from the fit)."""
    F, H, W = gen_alpha.shape
    max_step = 2 * max(world.speeds_px.values())
    ys, xs = np.mgrid[:H, :W] + 0.5
    data = torch.zeros_like(gen_alpha)
    weight = torch.ones_like(gen_alpha)
    inits: list[tuple[float, float] | None] = []
    mains, masks, near = [], [], []
    last, last_f = None, 0
    for f in range(F):
        a = gen_alpha[f].numpy()
        mask = a > 0.5
        labels, n = _components(mask)
        ideal = (ideal_alpha[f] > 0.5).numpy()
        near_ideal = (ndimage.distance_transform_edt(~ideal) <= GHOST_MARGIN_PX) if ideal.any() else np.zeros_like(mask)
        # a track continues for two frames at most: colour reappearing later, far away, is a new thing
        gap = f - last_f
        main = _pick_main(labels, n, near_ideal, last if gap <= 2 else None, extent + max_step * gap + GHOST_MARGIN_PX)
        main_mask = labels == main if main else np.zeros_like(mask)
        region = ndimage.binary_dilation(main_mask, _EIGHT, iterations=2) if main else main_mask
        blocked = ndimage.binary_dilation(others[f].numpy() | (mask & ~main_mask), _EIGHT) & ~main_mask
        data[f] = torch.from_numpy(a * region)
        weight[f] = torch.from_numpy((~blocked).astype(np.float32))
        area = float((a * region).sum())
        if main and area >= V2_MIN_FIT_PX:
            w = a * region
            inits.append((float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())))
        else:
            inits.append(None)
        mains.append(main_mask)
        masks.append(mask)
        near.append(near_ideal)
        if inits[-1] is not None:  # a cheap stand-in for the fit while picking the next frame's component
            last, last_f = inits[-1], f
    seen = [f for f in range(F) if inits[f] is not None]
    centres: list[tuple[float, float] | None] = [None] * F
    positions: list[tuple[float, float] | None] = [None] * F
    expected = [0.0] * F
    if seen:
        fit, covered, on_canvas, info = fit_centres(data[seen], weight[seen], obj,
                                                    torch.tensor([inits[f] for f in seen]))
        for i, f in enumerate(seen):
            positions[f] = (float(fit[i, 0]), float(fit[i, 1]))
            expected[f] = float(covered[i])
            # mostly hidden behind another object: the fit has too little to hold on to for motion
            # ... or seen only along one straight edge, which the fit may slide along
            if (covered[i] >= V2_MIN_FIT_PX and covered[i] >= V2_MIN_UNBLOCKED * on_canvas[i]
                    and info[i] >= V2_MIN_FIT_INFO):
                centres[f] = positions[f]
    ghost_px = []
    for f in range(1, F):
        # where two colours meet, blurred or anti-aliased pixels mix into a third: not a ghost
        beside_other = ndimage.binary_dilation(others[f].numpy(), _EIGHT, iterations=2)
        loose = masks[f] & ~mains[f] & ~near[f] & ~beside_other
        if positions[f] is not None:
            loose &= np.hypot(xs - positions[f][0], ys - positions[f][1]) > extent + GHOST_MARGIN_PX
        ghost_px.append(int(loose.sum()))
    area = [float(data[f].sum()) for f in range(F)]
    return _Seen(centres, positions, area, expected, ghost_px)


def _velocity(centres: list[tuple[float, float] | None]) -> tuple[float, float] | None:
    """Least-squares px/frame of the seen centres (None with fewer than two)."""
    pts = [(f, c) for f, c in enumerate(centres) if c is not None]
    if len(pts) < 2:
        return None
    t = np.array([f for f, _ in pts], dtype=np.float64)
    xy = np.array([c for _, c in pts], dtype=np.float64)
    t = t - t.mean()
    return tuple(float(v) for v in (t[:, None] * (xy - xy.mean(0))).sum(0) / (t * t).sum())


def _jerk_px(centres: list[tuple[float, float] | None], v: tuple[float, float]) -> float | None:
    """Largest |step - mean velocity| over consecutive seen frames (None with fewer than two steps)."""
    steps = [(b[0] - a[0] - v[0], b[1] - a[1] - v[1]) for a, b in zip(centres, centres[1:])
             if a is not None and b is not None]
    return max(math.hypot(*s) for s in steps) if len(steps) >= 2 else None


def classify_velocity(vx: float, vy: float, still_px_per_frame: float) -> str:
    """Direction word for a velocity (px/frame)."""
    if math.hypot(vx, vy) < still_px_per_frame:
        return "still"
    if abs(vx) >= abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


def palette_alphas(video: torch.Tensor, tol: float = 0.25) -> dict[str, torch.Tensor]:
    """`colour_alpha` of every palette colour at once ({colour: (F, H, W)}): one projection of each
    pixel onto the six colour lines (the v2 oracle's fast path; equal to colour_alpha up to rounding)."""
    rgb = (video.float().clamp(-1, 1) + 1) / 2
    x = (rgb - torch.tensor(BACKGROUND).view(3, 1, 1, 1)).reshape(3, -1)  # (3, N)
    d = torch.tensor([COLOURS[c] for c in COLOURS]) - torch.tensor(BACKGROUND)  # (6, 3)
    dd = (d * d).sum(1, keepdim=True)  # (6, 1)
    xd = d @ x  # (6, N)
    a = xd / dd
    resid2 = (x * x).sum(0, keepdim=True) - xd * a
    alpha = torch.where(resid2 < tol * tol, a.clamp(0, 1), torch.zeros_like(a))
    return {c: alpha[i].view(video.shape[1:]) for i, c in enumerate(COLOURS)}


def extra_colours(alphas: dict[str, torch.Tensor], prompt_colours: set[str], min_px: int = 6) -> list[str]:
    """Palette colours the prompt does not name with >= min_px confident pixels (coverage > 0.5) in
    some frame 1..F-1, away (> 2 px) from the prompt's colours: where two colours meet, anti-aliased
    or blurred pixels mix them into a third palette colour, which is no object."""
    """alphas: `palette_alphas` of the video."""
    named = torch.zeros(next(iter(alphas.values())).shape, dtype=torch.bool)
    for c in prompt_colours:
        named |= alphas[c] > 0.5
    near = np.stack([ndimage.binary_dilation(m, _EIGHT, iterations=2) for m in named.numpy()])
    out = []
    for c in COLOURS:
        if c in prompt_colours:
            continue
        m = (alphas[c] > 0.5).numpy() & ~near
        if (m[1:].reshape(m.shape[0] - 1, -1).sum(1) >= min_px).any():
            out.append(c)
    return out


def check_clip_v2(video: torch.Tensor, clip: Clip, world: WorldConfig) -> dict:
    """The v2 oracle: a generated video (3, F, H, W) against its clip, ground truth from the ideal
    rendering. Each object is tracked frame by frame: its component of its colour (the one on the
    ideal object, else the one continuing its own track), and a least-squares fit of its known shape
    to it (`fit_centres`), which places an object half out of the frame where it is. Per object:
      * `direction`: motion word of the least-squares velocity of the fitted centres over the frames
        it is seen in (>= V2_MIN_FIT_PX of coverage), `direction_ok`. An object that leaves early is
        judged on the frames before it left: the world starts every object with >= 35% of it on the
        canvas, so the ideal clip shows it in >= 2 frames; seen in fewer, it is `lost` (wrong);
      * `speed_ratio`: measured / prompted px per frame (moving prompts), `speed_ok` within 10%;
      * `jerk_px`: the largest frame-to-frame step off its own mean velocity; `abrupt` above
        ABRUPT_PX (the paper's "abrupt" motion; None with fewer than three consecutive seen frames);
      * `static`: a moving prompt whose object moves slower than STILL_FRACTION x the slowest speed;
      * `colour_kept`: fraction of the frames where the ideal shows >= 30% of it in which its colour
        covers 0.5-2x what its template covers at its fitted position (clipping and the other
        objects accounted for; a position error is the direction's and speed's business, not colour's);
      * `ghost_px` (frames 1..F-1): confident pixels of its colour off its component, away from the
        ideal object, from its fitted position and from the other objects (mixed edge pixels): duplicates, smears, and after it left the frame
        any of its colour that does not continue its track (a wrap-around copy at the other border);
        `ghost`: >= GHOST_MIN_PX in some frame;
      * `shape`, `shape_ok`, `size_ratio` as in v1 (frames where it is whole and apart).
    Clip: `ghost` (any object's), `count_ok` = no extra palette colour (`extra_colours`) and every
    object seen wherever the ideal shows >= half of it (`missing` lists the others).
    """
    F, H, W = video.shape[1:]
    ideal = render(clip, world)
    colours = [o.colour for o in clip.objects]
    gen = palette_alphas(video)
    ide = palette_alphas(ideal)
    confident = {c: gen[c] > 0.5 for c in colours}
    still_px = STILL_FRACTION * min(world.speeds_px.values())
    results, missing = [], []
    for obj in clip.objects:
        others = torch.zeros(F, H, W, dtype=torch.bool)
        for c in colours:
            if c != obj.colour:
                others |= confident[c]
        extent = _extent_px(obj, world)
        seen = _see_object(obj, gen[obj.colour], ide[obj.colour], others, extent, world)
        full = _full_area_px(obj, world)
        visible = (ide[obj.colour].sum(dim=(1, 2)) / full).tolist()
        v = _velocity(seen.centre)
        direction = "lost" if v is None else classify_velocity(*v, still_px)
        moving = obj.direction != "still"
        speed = None if v is None else math.hypot(*v)
        ratio = speed / obj.speed_px_per_frame if moving and speed is not None else None
        jerk = None if v is None else _jerk_px(seen.centre, v)
        judged = [f for f in range(F) if visible[f] >= V2_JUDGE_VISIBLE]
        kept = [seen.position[f] is not None and 0.5 * seen.expected_area[f] <= seen.area[f] <= 2 * seen.expected_area[f]
                for f in judged]
        if any(seen.position[f] is None for f in range(F) if visible[f] >= V2_COUNT_VISIBLE):
            missing.append(obj.colour)
        ghost = any(g >= GHOST_MIN_PX for g in seen.ghost_px)
        whole = [f for f in range(F) if visible[f] >= 0.98 and seen.position[f] is not None]
        apart = [f for f in whole if all(
            math.dist(obj.centre_px(f), o.centre_px(f)) >= 1.3 * (obj.radius_px + o.radius_px) + 1
            for o in clip.objects if o is not obj)]
        shapes_seen = [s for s in (_classify_shape(gen[obj.colour][f]) for f in (apart or whole)) if s is not None]
        shape = max(set(shapes_seen), key=shapes_seen.count) if shapes_seen else None
        ideal_area = ide[obj.colour].sum(dim=(1, 2)).tolist()
        size = [seen.area[f] / ideal_area[f] for f in whole]
        results.append({
            "colour": obj.colour,
            "colour_kept": sum(kept) / max(len(kept), 1),
            "direction": direction,
            "direction_ok": direction == obj.direction,
            "velocity_px": v,
            "speed_ratio": ratio,
            "speed_ok": ratio is not None and abs(ratio - 1) <= SPEED_TOLERANCE,
            "jerk_px": jerk,
            "abrupt": None if jerk is None else jerk > ABRUPT_PX,
            "static": moving and speed is not None and speed < still_px,
            "shape": shape,
            "shape_ok": shape == obj.shape,
            "shape_judged": bool(shapes_seen),  # seen whole, off the border, at least once
            "size_ratio": sum(size) / len(size) if size else None,
            "frames_seen": sum(c is not None for c in seen.centre),
            "ghost_px": seen.ghost_px,
            "ghost": ghost,
            "ok": direction == obj.direction and not ghost,
        })
    extra = extra_colours(gen, set(colours))
    return {"prompt": clip.prompt, "objects": results, "ghost": any(o["ghost"] for o in results),
            "count_ok": not extra and not missing, "extra_colours": extra, "missing": missing}
