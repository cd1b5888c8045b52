"""`fastlight export RUN --format onnx`: the student's transformer as ONNX, run with onnxruntime.

    DIR/transformer.onnx   Wan (WanTransformer3DModel, 2.1 and 2.2):
                           inputs  x (B, C, F, H, W) float32   noisy latents (first frame already the
                                                                clean image for TI2V)
                                   timestep (B, N) float32      1000 s per token (0 on a TI2V first frame)
                                   text (B, L, D) float32       text embeddings
                           HunyuanVideo (HunyuanVideoTransformer3DModel, text-to-video):
                           inputs  x (B, C, F, H, W), timestep (B,) 1000 s, text (B, L, D),
                                   text_mask (B, L) 1 = valid (valid tokens first),
                                   pooled (B, P) CLIP pooled projection,
                                   guidance (B,) embedded guidance * 1000 (guidance-distilled models only)
                           output  v (B, C, F, H, W) float32    velocity; B is dynamic, the rest fixed
    DIR/onnx.json          family, opset, shapes, versions, max |onnxruntime - torch| measured at export
    DIR/config.json, fastlight.json, null_text.safetensors, sampler.json   the student's description
                                                                (sampler.json: its own SamplerSpec)

Wan: the graph is the stock `WanTransformer3DModel.forward` with per-token timesteps (the Wan 2.2 TI2V
form, which also covers T2V). HunyuanVideo: the graph is `HunyuanDenoiser`'s forward (the stock
submodules in diffusers' order, equal to the stock forward: tests/models/test_hunyuan.py), because the
stock forward builds its attention mask with a boolean `masked_fill`, which onnxruntime's CPU `Where`
cannot run. Both are exported with torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`,
opset >= 18: the TorchScript exporter cannot export `aten::rms_norm`). `OnnxDenoiser` wraps an
onnxruntime session as a `Denoiser`, so the samplers run it unchanged (`fastlight sample --backend onnx`).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from pathlib import Path

import torch

from fastlight.diffusion.spec import choose_sampler
from fastlight.errors import InputError
from fastlight.evaluate.pipelines import pipeline_for
from fastlight.export.common import check_out_dir, copy_meta_files, find_model_dir
from fastlight.fileio import atomic_dir, atomic_write_json, read_json_object, read_safetensors
from fastlight.models.denoiser import Cond, Denoiser, ModelError
from fastlight.models.hunyuan import DEFAULT_GUIDANCE, HunyuanDenoiser
from fastlight.models.load import load_denoiser

ONNX_FILE = "transformer.onnx"
INFO_FILE = "onnx.json"
MIN_OPSET = 18  # the dynamo exporter's lowest opset
TOLERANCE = 1e-3  # refuse an export whose onnxruntime output differs more than this from torch


def _require_onnx():
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"ONNX needs onnx, onnxscript and onnxruntime ({', '.join(missing)} missing): "
                         "pip install 'fastlight[onnx]'")


# ---- opset ---------------------------------------------------------------------------------------
def ort_runs_opset(opset: int) -> str | None:
    """None if the installed onnxruntime loads an opset-`opset` model, else its (first-line) reason."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph types
        return str(e).strip().splitlines()[0][:200]
    return None


def check_opset(opset: int) -> None:
    """One-line ValueError for an opset the exporter cannot write or onnxruntime cannot run."""
    import onnx
    import onnxruntime as ort

    if opset < MIN_OPSET:
        raise InputError(f"--opset {opset}: torch {torch.__version__}'s ONNX exporter (dynamo) writes opset >= "
                         f"{MIN_OPSET}; use --opset {MIN_OPSET} or higher")
    top = onnx.defs.onnx_opset_version()
    if opset > top or ort_runs_opset(opset) is not None:
        runnable = max((o for o in range(MIN_OPSET, top + 1) if ort_runs_opset(o) is None), default=None)
        raise InputError(f"--opset {opset}: the installed onnxruntime {ort.__version__} (onnx {onnx.__version__}) "
                         f"cannot run it; use --opset {MIN_OPSET}..{runnable}")


# ---- the graph -------------------------------------------------------------------------------
class TransformerGraph(torch.nn.Module):
    """Wan: (x, per-token timestep, text) -> v through the stock diffusers forward: what ONNX holds."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.model(hidden_states=x, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]


class HunyuanGraph(torch.nn.Module):
    """HunyuanVideo: (x, timestep, text, text_mask, pooled[, guidance]) -> v through `HunyuanDenoiser`
    (the stock forward's boolean masked_fill has no onnxruntime CPU kernel; the adapter builds the same
    mask with a comparison)."""

    def __init__(self, denoiser: Denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x, timestep, text, text_mask, pooled, guidance=None):
        extra = {"pooled": pooled, "text_mask": text_mask}
        if guidance is not None:
            extra["guidance"] = guidance
        return self.denoiser(x, timestep / 1000.0, Cond(text, extra=extra))


def graph_for(den: Denoiser) -> torch.nn.Module:
    """The module whose forward the ONNX file holds, for the student's family."""
    if den.family == "wan":
        return TransformerGraph(den.model).eval()
    if den.family == "hunyuan":
        return HunyuanGraph(den).eval()
    raise ModelError(f"ONNX export supports Wan and HunyuanVideo students, not {type(den.model).__name__}")


def family_of(config: dict) -> str:
    """'wan' or 'hunyuan' from a transformer config.json (its diffusers class)."""
    return "hunyuan" if config.get("_class_name") == "HunyuanVideoTransformer3DModel" else "wan"


def input_names(config: dict) -> list[str]:
    if family_of(config) == "wan":
        return ["x", "timestep", "text"]
    return ["x", "timestep", "text", "text_mask", "pooled"] + (["guidance"] if config.get("guidance_embeds") else [])


def patch_of(config: dict) -> tuple[int, int, int]:
    """(p_t, p_h, p_w) of a Wan or HunyuanVideo transformer config."""
    if family_of(config) == "hunyuan":
        return config["patch_size_t"], config["patch_size"], config["patch_size"]
    return tuple(config["patch_size"])


def text_dim_of(config: dict) -> int:
    return config["text_embed_dim"] if family_of(config) == "hunyuan" else config["text_dim"]


def token_timesteps(s: torch.Tensor, shape, patch, ti2v: bool) -> torch.Tensor:
    """(B,) levels -> (B, N) per-token timesteps 1000 s, 0 on the first frame's tokens for TI2V."""
    B, _, F, H, W = shape
    p_t, p_h, p_w = patch
    per_frame = (H // p_h) * (W // p_w)
    t = (s.float() * 1000.0).view(B, 1, 1).expand(B, F // p_t, per_frame).clone()
    if ti2v:
        t[:, 0] = 0.0
    return t.reshape(B, -1)


def example_inputs(config: dict, shape: dict, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random graph inputs of the exported shapes, batch `batch`, in `input_names(config)` order."""
    g = torch.Generator().manual_seed(seed)
    C, F, H, W, L = config["in_channels"], shape["frames"], shape["height"], shape["width"], shape["text_len"]
    x = torch.randn(batch, C, F, H, W, generator=g)
    s = torch.rand(batch, generator=g)
    text = torch.randn(batch, L, text_dim_of(config), generator=g)
    if family_of(config) == "wan":
        return x, token_timesteps(s, x.shape, patch_of(config), ti2v=True), text
    mask = torch.ones(batch, L)
    mask[0, (L + 1) // 2:] = 0.0  # one prompt shorter than the padded length: the mask matters
    pooled = torch.randn(batch, config["pooled_projection_dim"], generator=g)
    inputs = (x, s * 1000.0, text, mask, pooled)
    if config.get("guidance_embeds"):
        inputs += (torch.full((batch,), DEFAULT_GUIDANCE * 1000.0),)
    return inputs


def latent_shape(den: Denoiser, frames, height, width, text_len) -> dict:
    """The fixed (non-batch) sizes of the graph: the ones given, else those of the registered
    end-to-end pipeline that handles the model (e.g. the Shapes world's; `evaluate/pipelines.py`)."""
    pipe = pipeline_for(den)
    d = {}
    if pipe is not None:
        _, f, h, w = pipe.latent_shape(den)
        d = {"frames": f, "height": h, "width": w, "text_len": pipe.text_len(den)}
    given = {"frames": frames, "height": height, "width": width, "text_len": text_len}
    d.update({k: v for k, v in given.items() if v is not None})
    missing = [k for k in ("frames", "height", "width", "text_len") if k not in d]
    if missing:
        raise InputError(f"no registered pipeline knows this model's sizes: give the latent sizes "
                         f"--{' --'.join(m.replace('_', '-') for m in missing)}")
    bad = [k for k, v in d.items() if v < 1]
    if bad:
        raise InputError(f"--{bad[0].replace('_', '-')} must be >= 1")
    patch = patch_of(dict(den.model.config))
    if d["frames"] % patch[0] or d["height"] % patch[1] or d["width"] % patch[2]:
        raise InputError(f"latent frames/height/width {d['frames']}x{d['height']}x{d['width']} must be multiples of "
                         f"the patch size {patch}")
    return d


def to_onnx_file(graph: torch.nn.Module, path: Path, inputs: tuple, names: list[str], opset: int) -> None:
    """Export `graph` with a dynamic batch axis on every input (dynamo exporter, quiet)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    params = list(inspect.signature(graph.forward).parameters)[:len(inputs)]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            graph, inputs, None, dynamo=True, opset_version=opset, verbose=False,
            input_names=names, output_names=["v"], dynamic_shapes={p: {0: batch} for p in params},
        )
        prog.save(str(path))


def session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session for `path` (intra-op threads = torch's by default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not steal torch's CPU
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_diff_vs_torch(graph: torch.nn.Module, sess, config: dict, shape: dict, batches=(1, 3)) -> float:
    """Max |onnxruntime - torch| of v over random inputs at several batch sizes."""
    names, worst = input_names(config), 0.0
    for i, b in enumerate(batches):
        inputs = example_inputs(config, shape, b, seed=100 + i)
        with torch.inference_mode():
            ref = graph(*inputs)
        out = sess.run(["v"], {n: t.numpy() for n, t in zip(names, inputs)})[0]
        worst = max(worst, (torch.from_numpy(out) - ref).abs().max().item())
    return worst


def export_onnx(run: str, out: str, overwrite: bool = False, opset: int = MIN_OPSET, frames=None, height=None,
                width=None, text_len=None) -> tuple[Path, dict]:
    """Write RUN's student transformer as DIR/transformer.onnx (+ its description), checked against torch."""
    _require_onnx()
    import onnxruntime as ort

    check_opset(opset)
    model_dir = find_model_dir(run)
    den = load_denoiser(model_dir).eval()
    graph = graph_for(den)
    shape = latent_shape(den, frames, height, width, text_len)
    out_dir = check_out_dir(out, overwrite, (model_dir,))
    config = dict(den.model.config)
    names = input_names(config)
    with atomic_dir(out_dir) as tmp:
        to_onnx_file(graph, tmp / ONNX_FILE, example_inputs(config, shape, 2), names, opset)
        diff = max_diff_vs_torch(graph, session(tmp / ONNX_FILE), config, shape)
        if diff > TOLERANCE:
            raise ModelError(f"the ONNX graph differs from torch by {diff:.2e} (> {TOLERANCE}); not written")
        copy_meta_files(model_dir, tmp, skip=("sampler.json",))
        choice = choose_sampler(model_dir)
        print(choice.line)
        choice.spec.save(tmp)  # every export says how it samples, the default Euler sampler too
        info = {"format": "onnx", "family": den.family, "run": str(run), "model": str(model_dir), "file": ONNX_FILE,
                "opset": opset, "inputs": _input_shapes(config, shape),
                "outputs": {"v": ["batch", config["out_channels"], shape["frames"], shape["height"], shape["width"]]},
                "shape": shape, "max_abs_diff_vs_torch": diff, "checked_batches": [1, 3],
                "exporter": "torch.onnx.export(dynamo=True)", "torch": torch.__version__,
                "onnxruntime": ort.__version__}
        atomic_write_json(tmp / INFO_FILE, info)
    return out_dir, info


def _input_shapes(config: dict, shape: dict) -> dict:
    """{input name: [batch, sizes...]} as onnx.json records them."""
    L, C = shape["text_len"], config["in_channels"]
    x = ["batch", C, shape["frames"], shape["height"], shape["width"]]
    text = ["batch", L, text_dim_of(config)]
    if family_of(config) == "wan":
        return {"x": x, "timestep": ["batch", _num_tokens(config, shape)], "text": text}
    d = {"x": x, "timestep": ["batch"], "text": text, "text_mask": ["batch", L],
         "pooled": ["batch", config["pooled_projection_dim"]]}
    if config.get("guidance_embeds"):
        d["guidance"] = ["batch"]
    return d


def _num_tokens(config: dict, shape: dict) -> int:
    p_t, p_h, p_w = patch_of(config)
    return (shape["frames"] // p_t) * (shape["height"] // p_h) * (shape["width"] // p_w)


# ---- running it ----------------------------------------------------------------------------------
class OnnxDenoiser(Denoiser):
    """An exported transformer.onnx behind the `Denoiser` contract (no skip, no capture): the
    samplers and `fastlight sample --backend onnx` use it like the torch model. Wan: T2V and TI2V as
    `WanDenoiser`; HunyuanVideo: T2V with `HunyuanDenoiser`'s conditioning (cond.extra pooled,
    text_mask, optional guidance) and null condition."""

    family = "wan-onnx"

    def __init__(self, sess, config: dict, info: dict, null_text: torch.Tensor | None, meta: dict,
                 null_pooled: torch.Tensor | None = None):
        super().__init__()
        self.session, self.config, self.info, self.meta = sess, config, info, dict(meta)
        self.hunyuan = family_of(config) == "hunyuan"
        self.family = "hunyuan-onnx" if self.hunyuan else "wan-onnx"
        dim = text_dim_of(config)
        if null_text is None:
            null_text = torch.zeros(1, 1, dim)
        self.register_buffer("null_text", null_text.reshape(1, -1, dim).float(), persistent=False)
        if self.hunyuan:  # HunyuanDenoiser.null_extra reads the pooled part of the null (zeros unless saved)
            if null_pooled is None:
                null_pooled = torch.zeros(1, int(config["pooled_projection_dim"]))
            self.register_buffer("null_pooled", null_pooled.reshape(1, -1).float(), persistent=False)

    @classmethod
    def from_folder(cls, path: str | Path, threads: int | None = None) -> "OnnxDenoiser":
        path = Path(path)
        if not (path / ONNX_FILE).is_file():
            raise ModelError(f"{path} has no {ONNX_FILE}; make one with `fastlight export MODEL --format onnx "
                             f"--out DIR` and pass --model DIR")
        _require_onnx()
        fix = "re-export it with fastlight export --format onnx"
        config = read_json_object(path / "config.json", ModelError, fix)
        info = read_json_object(path / INFO_FILE, ModelError, fix) if (path / INFO_FILE).is_file() else {}
        meta = read_json_object(path / "fastlight.json", ModelError, fix) if (path / "fastlight.json").is_file() else {}
        null_file = path / "null_text.safetensors"
        nulls = read_safetensors(null_file, ModelError, fix) if null_file.is_file() else {}
        return cls(session(path / ONNX_FILE, threads), config, info, nulls.get("null_text"), meta,
                   nulls.get("null_pooled"))

    # HunyuanVideo's null condition: the adapter's rules (zero pooled, the null text's tokens valid)
    def null_cond(self, cond: Cond) -> Cond:
        if not self.hunyuan:
            return super().null_cond(cond)
        nc = super().null_cond(cond)
        L, L0 = cond.text.shape[1], self.null_text.shape[1]
        if L0 < L and nc.extra is not None and "text_mask" in nc.extra:
            nc.extra["text_mask"] = torch.nn.functional.pad(nc.extra["text_mask"], (0, L - L0))
        return nc

    def null_extra(self, key: str, value: torch.Tensor) -> torch.Tensor:
        return HunyuanDenoiser.null_extra(self, key, value) if self.hunyuan else super().null_extra(key, value)

    def forward(self, x_t, s, cond: Cond, skip=(), capture=None):
        """v = eps - x0 from onnxruntime; TI2V as in `WanDenoiser` (clean first frame, timestep 0, v 0)."""
        if tuple(skip) or capture is not None:
            raise InputError("the ONNX backend runs the exported graph as is: it cannot skip or capture blocks")
        expected = tuple(self.info.get("inputs", {}).get("x", [None])[1:])
        if expected and tuple(x_t.shape[1:]) != expected:
            raise InputError(f"x_t has shape {tuple(x_t.shape[1:])} per sample; the ONNX graph was exported for {expected}")
        s = torch.as_tensor(s, dtype=torch.float32).expand(x_t.shape[0]) if torch.as_tensor(s).ndim == 0 else s
        if self.hunyuan:
            return self._hunyuan_forward(x_t, s, cond)
        if cond.image is not None:
            x_t = torch.cat([cond.image.to(x_t), x_t[:, :, 1:]], dim=2)
        t = token_timesteps(s.cpu(), x_t.shape, patch_of(self.config), ti2v=cond.image is not None)
        feed = {"x": x_t.detach().float().cpu().numpy(), "timestep": t.numpy(),
                "text": cond.text.detach().float().cpu().numpy()}
        v = torch.from_numpy(self.session.run(["v"], feed)[0]).to(x_t.device, x_t.dtype)
        if cond.image is not None:
            v = torch.cat([torch.zeros_like(v[:, :, :1]), v[:, :, 1:]], dim=2)
        return v

    def _hunyuan_forward(self, x_t, s, cond: Cond):
        if cond.image is not None:
            raise InputError("the HunyuanVideo ONNX graph is text-to-video: it takes no first-frame image")
        extra = cond.extra or {}
        missing = [k for k in ("pooled", "text_mask") if k not in extra]
        if missing:
            raise InputError(f"HunyuanVideo needs cond.extra {missing} (pooled: (B, P) CLIP pooled projection; "
                             "text_mask: (B, L) text attention mask)")
        B = x_t.shape[0]
        feed = {"x": x_t, "timestep": s.float().cpu() * 1000.0, "text": cond.text,
                "text_mask": extra["text_mask"], "pooled": extra["pooled"]}
        if self.config.get("guidance_embeds"):
            g = extra.get("guidance")
            feed["guidance"] = (torch.full((B,), DEFAULT_GUIDANCE * 1000.0) if g is None
                                else torch.as_tensor(g, dtype=torch.float32).expand(B))
        feed = {k: v.detach().float().cpu().numpy() for k, v in feed.items()}
        return torch.from_numpy(self.session.run(["v"], feed)[0]).to(x_t.device, x_t.dtype)

    def block_infos(self):
        return []
