"""The Shapes world's text encoder: deterministic, shipped, no weights.

Real Wan feeds umT5 token embeddings (B, 512, 4096) to the transformer's cross-attention.
Our world's prompts have a tiny grammar, so the encoder is a parser plus a fixed lexicon:

    prompt  := object (" and " object)?
    object  := "a" COLOUR SHAPE ( ("moving"|"moves") DIRECTION SPEED | ("staying"|"stays") "still" )
    SPEED   := "slowly" | "quickly"   (synonyms "slow", "fast")

Each object phrase becomes ONE token of `TEXT_DIM` features (a "phrase embedding"):

    [0:6]   colour one-hot          [6:9]   shape one-hot
    [9:14]  direction one-hot       [14:16] speed one-hot (zero for still)
    [16:18] velocity (vx, vy) in px/frame, x2
    [18]    1 (an object is present)           [19:32] 0

The sequence has `MAX_OBJECTS` tokens; unused slots and the null (unconditional) prompt
are all-zero tokens, like an empty prompt. Why one token per phrase: measured on this
machine, a 1-token-per-word random-vector lexicon left the motion word ~1/8 of the
cross-attention input and a tiny DiT ignored it for 4,000 steps; a phrase token puts
the motion into every object's only token.
"""
from __future__ import annotations

import torch

from fastlight.errors import InputError
from fastlight.shapes.world import COLOURS, DIRECTIONS, SHAPES, SPEEDS_PX

TEXT_DIM = 32
MAX_OBJECTS = 2
_SPEED_SYNONYMS = {"slowly": "slowly", "slow": "slowly", "quickly": "quickly", "fast": "quickly"}
VOCABULARY = sorted(
    {"a", "an", "and", "moving", "moves", "staying", "stays", "still"}
    | set(COLOURS) | set(SHAPES) | set(DIRECTIONS) | set(_SPEED_SYNONYMS)
)


class PromptError(InputError):
    """A prompt the Shapes text encoder cannot read."""


def parse(prompt: str) -> list[dict]:
    """Prompt -> list of {colour, shape, direction, speed}; raises PromptError naming the fix."""
    words = prompt.lower().replace(",", " ").replace(".", " ").split()
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown:
        raise PromptError(
            f"word(s) {unknown} are not in the Shapes vocabulary; use e.g. "
            f"'a red circle moving left quickly' (colours {list(COLOURS)}, shapes {list(SHAPES)}, "
            f"directions {list(DIRECTIONS)}, speeds slowly/quickly)"
        )
    phrases, cur = [], []
    for w in words:
        if w == "and":
            phrases.append(cur)
            cur = []
        else:
            cur.append(w)
    phrases.append(cur)
    if not 1 <= len(phrases) <= MAX_OBJECTS:
        raise PromptError(f"prompt describes {len(phrases)} objects; the Shapes world has 1 to {MAX_OBJECTS}")
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
            raise PromptError(f"phrase {' '.join(ph)!r} needs a speed: 'slowly' or 'quickly'")
        out.append({"colour": colour[0], "shape": shape[0], "direction": direction[0], "speed": (speed or ["slowly"])[0]})
    if len({o["colour"] for o in out}) != len(out):
        raise PromptError("two objects share a colour; the Shapes world gives each object its own colour")
    return out


def phrase_token(colour: str, shape: str, direction: str, speed: str) -> torch.Tensor:
    tok = torch.zeros(TEXT_DIM)
    tok[list(COLOURS).index(colour)] = 1
    tok[6 + SHAPES.index(shape)] = 1
    tok[9 + list(DIRECTIONS).index(direction)] = 1
    if direction != "still":
        tok[14 + list(SPEEDS_PX).index(speed)] = 1
    dx, dy = DIRECTIONS[direction]
    tok[16] = 2 * dx * SPEEDS_PX[speed]
    tok[17] = 2 * dy * SPEEDS_PX[speed]
    tok[18] = 1
    return tok


def encode(prompts: list[str] | str) -> torch.Tensor:
    """Prompts -> text embeddings (B, MAX_OBJECTS, TEXT_DIM). Empty string = null prompt."""
    if isinstance(prompts, str):
        prompts = [prompts]
    out = torch.zeros(len(prompts), MAX_OBJECTS, TEXT_DIM)
    for i, p in enumerate(prompts):
        if not p.strip():
            continue
        for j, o in enumerate(parse(p)):
            out[i, j] = phrase_token(**o)
    return out
