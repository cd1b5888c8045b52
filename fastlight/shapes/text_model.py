"""The Shapes text encoder as real library objects: a transformers model and a word-level tokenizer.

    import fastlight.shapes.text_model                    # diffusers imports no module a folder names
    pipe = WanPipeline.from_pretrained(folder)            # text_encoder: ShapesPhraseEncoder
    emb = pipe.encode_prompt("a red circle moving left quickly", do_classifier_free_guidance=False)[0]
    # == text.encode(prompt) zero-padded to max_sequence_length (the empty prompt: all zeros)

`ShapesPhraseEncoder` (a `transformers.PreTrainedModel`, config `ShapesPhraseConfig`, model_type
"shapes-phrase") maps token ids to the phrase tokens of fastlight/shapes/text.py: it spells the ids
back into words with its config's vocabulary and runs `text.encode` on them (the same numbers, the
same PromptError for an unreadable prompt). Output position j < number of objects holds phrase
token j; every other position is zero. So the stock `WanPipeline._get_t5_prompt_embeds`, which keeps
the first (attention-mask sum) positions and zero-pads to max_sequence_length, gives exactly
`text.encode(prompt)` zero-padded: a prompt has at least 4 words per object, so its mask always
covers the object slots. The tokenizer also cuts the prompt at max_sequence_length, so that length must
be at least `prompt_tokens(world)` (v1 14, v2 21): the pipeline folder records `short_text_len(world)`
(16, 24) as its text length (fastlight/shapes/pipeline_folder.py), not the stock 512.

The tokenizer is a `tokenizers` WordLevel model over the Shapes vocabulary (lower-cased, commas and
full stops dropped as `text.parse` drops them; <pad> = 0, </s> = 1 appended like T5's, <unk> = 2
for a word outside the vocabulary, which the encoder then refuses), saved as a
`PreTrainedTokenizerFast` folder.

How stock diffusers loads it: `save_pretrained` records the component as
["fastlight.shapes.text_model", "ShapesPhraseEncoder"] in model_index.json. diffusers 0.42
(`pipeline_loading_utils._get_library_or_raise`) imports only the libraries it loads from
(diffusers, transformers, ...) and takes any other name from `sys.modules`: the caller imports this
module first. The class is then found with `getattr(module, name)` and loaded with `from_pretrained`
because it subclasses `transformers.PreTrainedModel` (which this module's namespace must expose:
diffusers looks its loadable base classes up in the component's module). Importing this module also
registers the config and model with transformers' AutoConfig / AutoModel, so transformers-style
loaders (`fastlight.data.latents._EncoderEmbeds`) load the folder too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import ModelOutput

from fastlight.shapes import text, world as shapes

MODEL_TYPE = "shapes-phrase"
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
TOKENIZER_MAX_LENGTH = 512  # WanPipeline's default max_sequence_length
OBJECT_WORDS = 6  # the longest object phrase: "a COLOUR SHAPE moving DIRECTION SPEED" (one word each)
TEXT_LEN_MULTIPLE = 8  # a short text length is rounded up to this (friendlier tensor shapes)


def vocabulary() -> list[str]:
    """Token id -> word: the specials, then the Shapes vocabulary (text.VOCABULARY, sorted)."""
    return [*SPECIALS, *text.VOCABULARY]


class ShapesPhraseConfig(PretrainedConfig):
    """The phrase encoder's settings: `vocab` (id -> word), `world` (the Shapes world whose phrase
    encoding it computes, `WorldConfig.to_dict()`; v1 when not given: its phrase slots, speed words and
    velocity scale), `hidden_size` (the phrase token width, text.TEXT_DIM)."""

    model_type = MODEL_TYPE

    def __init__(self, vocab: list[str] | None = None, world: dict | None = None,
                 hidden_size: int = text.TEXT_DIM, **kwargs):
        self.vocab = list(vocab) if vocab is not None else vocabulary()
        self.world = dict(world) if world is not None else shapes.WORLDS["v1"].to_dict()
        self.max_objects = self.world_config().max_objects  # phrase slots (recorded for readers of config.json)
        self.hidden_size = int(hidden_size)
        kwargs.setdefault("pad_token_id", 0)
        kwargs.setdefault("eos_token_id", 1)
        kwargs.pop("max_objects", None)  # derived from `world`
        super().__init__(**kwargs)

    def world_config(self) -> shapes.WorldConfig:
        return shapes.WorldConfig.from_dict(self.world)


@dataclass
class PhraseEncoderOutput(ModelOutput):
    """`last_hidden_state` (B, L, hidden_size): phrase tokens in the first slots, zeros elsewhere."""

    last_hidden_state: torch.Tensor | None = None


class ShapesPhraseEncoder(PreTrainedModel):
    """Token ids (+ attention mask) -> the Shapes phrase tokens (`text.encode`), as a transformers model.

    Weight-free in substance: its one parameter, `scale` (1,) = 1, multiplies the output so the module
    has a device and a dtype (diffusers and transformers read both off its parameters)."""

    config_class = ShapesPhraseConfig
    # the world's oracle for a pipeline with this text encoder (fastlight.evaluate.real's oracle hook)
    fastlight_oracle = "fastlight.shapes.pipeline_bench:pipeline_oracle"
    base_model_prefix = "shapes_phrase"
    main_input_name = "input_ids"
    _no_split_modules: list[str] = []

    def __init__(self, config: ShapesPhraseConfig):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.ones(1), requires_grad=False)
        self.post_init()

    def _init_weights(self, module):
        if module is self:
            with torch.no_grad():
                self.scale.fill_(1.0)

    def words(self, ids: torch.Tensor, mask: torch.Tensor | None) -> list[str]:
        """(B, L) ids -> B prompts spelt from their non-special tokens (the masked ones left out)."""
        vocab = self.config.vocab
        keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        out = []
        for row, m in zip(ids.tolist(), keep.tolist()):
            words = [vocab[i] if 0 <= i < len(vocab) else UNK for i, k in zip(row, m) if k]
            out.append(" ".join(w for w in words if w not in (PAD, EOS)))
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> PhraseEncoderOutput:
        b, length = input_ids.shape
        world = self.config.world_config()
        k = world.max_objects
        phrases = text.encode(self.words(input_ids, attention_mask), world)  # (B, k, D); <unk> -> PromptError
        hidden = phrases.new_zeros(b, max(length, k), phrases.shape[-1])
        hidden[:, :k] = phrases
        hidden = hidden[:, :length].to(self.scale.device, self.scale.dtype) * self.scale
        return PhraseEncoderOutput(last_hidden_state=hidden)


def prompt_tokens(world: shapes.WorldConfig | str = "v1") -> int:
    """The most tokens a prompt of `world` tokenizes to: max_objects phrases of OBJECT_WORDS words, an
    "and" between two, the appended </s> (v1 14, v2 21). A shorter max_sequence_length makes the stock
    pipeline's tokenizer cut the prompt (the encoder then refuses it, or reads fewer objects)."""
    world = shapes.world_from_name(world) if isinstance(world, str) else world
    k = world.max_objects
    return k * OBJECT_WORDS + (k - 1) + 1


def short_text_len(world: shapes.WorldConfig | str = "v1") -> int:
    """The Shapes pipeline's default text length: prompt_tokens(world) rounded up to TEXT_LEN_MULTIPLE
    (v1 16, v2 24): every prompt fits whole, and 3 phrase tokens meet ~13-21 zero tokens, not 509."""
    n = prompt_tokens(world)
    return -(-n // TEXT_LEN_MULTIPLE) * TEXT_LEN_MULTIPLE


def build_tokenizer(max_length: int = TOKENIZER_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """The word-level Shapes tokenizer (built offline with `tokenizers`): lower-cased, `,` / `.` dropped,
    split on whitespace, </s> appended, <pad> = 0."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(",", " "),
                                           normalizers.Replace(".", " ")])
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   model_max_length=max_length)


def build_encoder(world: shapes.WorldConfig | str = "v1") -> ShapesPhraseEncoder:
    """A ShapesPhraseEncoder for `world` (a WorldConfig or a name of shapes.WORLDS)."""
    world = shapes.world_from_name(world) if isinstance(world, str) else world
    return ShapesPhraseEncoder(ShapesPhraseConfig(world=world.to_dict())).eval()


AutoConfig.register(MODEL_TYPE, ShapesPhraseConfig, exist_ok=True)
AutoModel.register(ShapesPhraseConfig, ShapesPhraseEncoder, exist_ok=True)
