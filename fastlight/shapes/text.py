"""The Shapes world's text encoder: deterministic, shipped, no weights.

Real Wan feeds umT5 token embeddings (B, 512, 4096) to the transformer's cross-attention.
Our world's prompts have a tiny grammar, so the encoder is a parser plus a fixed lexicon:

    prompt  := object (" and " object)*        (at most the world's max_objects: v1 2, v2 3)
    object  := "a" COLOUR SHAPE ( ("moving"|"moves") DIRECTION SPEED | ("staying"|"stays") "still" )
    SPEED   := "slowly" | "quickly"   (synonyms "slow", "fast"); v2 adds "steadily" ("steady")

Each object phrase becomes ONE token of `TEXT_DIM` features (a "phrase embedding"):

    [0:6]   colour one-hot          [6:9]   shape one-hot
    [9:14]  direction one-hot       [14:16] speed one-hot (zero for still)
    [16:18] velocity (vx, vy) in px/frame x the world's text_velocity_scale (v1: x2, v2: x0.6)
    [18]    1 (an object is present)           [19]    speed one-hot "steadily" (v2)
    [20:32] 0

The sequence has the world's `max_objects` tokens (`MAX_OBJECTS` = 2 for v1, 3 for v2); unused
slots and the null (unconditional) prompt are all-zero tokens, like an empty prompt. `encode`
without a world is v1's encoder, bit for bit; a v2 world only adds the third token, the
"steadily" slot and its own px/frame in the velocity features. Why one token per phrase: measured on this
machine, a 1-token-per-word random-vector lexicon left the motion word ~1/8 of the
cross-attention input and a tiny DiT ignored it for 4,000 steps; a phrase token puts
the motion into every object's only token.
"""
from __future__ import annotations

import torch

from fastlight.errors import InputError
from fastlight.shapes.world import COLOURS, DIRECTIONS, SHAPES, WorldConfig

TEXT_DIM = 32
MAX_OBJECTS = 2  # v1's token count; a world's own: WorldConfig.max_objects
_SPEED_SYNONYMS = {"slowly": "slowly", "slow": "slowly", "quickly": "quickly", "fast": "quickly",
                   "steadily": "steadily", "steady": "steadily"}
SPEED_SLOT = {"slowly": 14, "quickly": 15, "steadily": 19}  # v1's two slots, then a spare feature
_V1 = WorldConfig()
VOCABULARY = sorted(
    {"a", "an", "and", "moving", "moves", "staying", "stays", "still"}
    | set(COLOURS) | set(SHAPES) | set(DIRECTIONS) | set(_SPEED_SYNONYMS)
)


class PromptError(InputError):
    """A prompt the Shapes text encoder cannot read."""


def _speed_names(world: WorldConfig) -> str:
    return "/".join(world.speeds_px)


def parse(prompt: str, world: WorldConfig | None = None) -> list[dict]:
    """Prompt -> list of {colour, shape, direction, speed}; raises PromptError naming the fix.
    `world` (default v1) sets how many objects and which speed words are allowed."""
    world = world or _V1
    words = prompt.lower().replace(",", " ").replace(".", " ").split()
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown:
        raise PromptError(
            f"word(s) {unknown} are not in the Shapes vocabulary; use e.g. "
            f"'a red circle moving left quickly' (colours {list(COLOURS)}, shapes {list(SHAPES)}, "
            f"directions {list(DIRECTIONS)}, speeds {_speed_names(world)})"
        )
    phrases, cur = [], []
    for w in words:
        if w == "and":
            phrases.append(cur)
            cur = []
        else:
            cur.append(w)
    phrases.append(cur)
    if not 1 <= len(phrases) <= world.max_objects:
        raise PromptError(f"prompt describes {len(phrases)} objects; the Shapes world has 1 to {world.max_objects}")
    out = []
    for ph in phrases:
        colour = [w for w in ph if w in COLOURS]
        shape = [w for w in ph if w in SHAPES]
        direction = [w for w in ph if w in DIRECTIONS]
        speed = [_SPEED_SYNONYMS[w] for w in ph if w in _SPEED_SYNONYMS]
        if len(colour) != 1 or len(shape) != 1 or len(direction) != 1:
            raise PromptError(
                f"phrase {' '.join(ph)!r} needs exactly one colour, one shape and one direction, "
                "e.g. 'a red circle moving left quickly' or 'a blue square staying still'"
            )
        if direction[0] != "still" and len(speed) != 1:
            raise PromptError(f"phrase {' '.join(ph)!r} needs a speed: {' or '.join(repr(w) for w in world.speeds_px)}")
        if speed and speed[0] not in world.speeds_px:
            raise PromptError(f"speed {speed[0]!r} is not in the {world.name} Shapes world; use "
                              f"{_speed_names(world)}")
        out.append({"colour": colour[0], "shape": shape[0], "direction": direction[0], "speed": (speed or ["slowly"])[0]})
    if len({o["colour"] for o in out}) != len(out):
        raise PromptError("two objects share a colour; the Shapes world gives each object its own colour")
    return out


def phrase_token(colour: str, shape: str, direction: str, speed: str, world: WorldConfig | None = None) -> torch.Tensor:
    """One object's token (TEXT_DIM,) in `world` (default v1; module doc: the feature layout)."""
    world = world or _V1
    tok = torch.zeros(TEXT_DIM)
    tok[list(COLOURS).index(colour)] = 1
    tok[6 + SHAPES.index(shape)] = 1
    tok[9 + list(DIRECTIONS).index(direction)] = 1
    if direction != "still":
        tok[SPEED_SLOT[speed]] = 1
    dx, dy = DIRECTIONS[direction]
    v = world.speeds_px[speed] if speed in world.speeds_px else 0.0  # "still" keeps a speed word it may lack
    tok[16] = world.text_velocity_scale * dx * v
    tok[17] = world.text_velocity_scale * dy * v
    tok[18] = 1
    return tok


def encode(prompts: list[str] | str, world: WorldConfig | None = None) -> torch.Tensor:
    """Prompts -> text embeddings (B, world.max_objects, TEXT_DIM) (v1 without a world: (B, 2, 32)).
    Empty string = null prompt."""
    world = world or _V1
    if isinstance(prompts, str):
        prompts = [prompts]
    out = torch.zeros(len(prompts), world.max_objects, TEXT_DIM)
    for i, p in enumerate(prompts):
        if not p.strip():
            continue
        for j, o in enumerate(parse(p, world)):
            out[i, j] = phrase_token(**o, world=world)
    return out
