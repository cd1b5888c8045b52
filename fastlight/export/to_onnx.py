"""`fastlight export RUN --format onnx`: the student's transformer as ONNX, run with onnxruntime.

    DIR/transformer.onnx   inputs  x (B, C, F, H, W) float32   noisy latents (first frame already the
                                                                clean image for TI2V)
                                   timestep (B, N) float32      1000 s per token (0 on a TI2V first frame)
                                   text (B, L, D) float32       text embeddings
                           output  v (B, C, F, H, W) float32    velocity; B is dynamic, the rest fixed
    DIR/onnx.json          opset, shapes, versions, max |onnxruntime - torch| measured at export
    DIR/config.json, fastlight.json, null_text.safetensors, sampler.json   the student's description
                                                                (sampler.json: its own SamplerSpec)

The graph is the stock `WanTransformer3DModel.forward` with per-token timesteps (the Wan 2.2 TI2V
form, which also covers T2V), exported with torch's dynamo exporter (`torch.onnx.export(...,
dynamo=True)`, opset >= 18: the TorchScript exporter cannot export `aten::rms_norm`). `OnnxDenoiser`
wraps an onnxruntime session as a `Denoiser`, so the samplers run it unchanged
(`fastlight sample --backend onnx`).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from fastlight.diffusion.spec import choose_sampler
from fastlight.errors import InputError
from fastlight.evaluate.pipelines import pipeline_for
from fastlight.fileio import atomic_dir
from fastlight.export.common import check_out_dir, copy_meta_files, find_model_dir
from fastlight.fileio import atomic_write_json, read_json_object, read_safetensors
from fastlight.models.denoiser import Cond, Denoiser, ModelError
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
    """(x, per-token timestep, text) -> v through the stock diffusers forward: what ONNX holds."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.model(hidden_states=x, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]


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
    """Random (x, timestep, text) of the exported shapes, batch `batch`."""
    g = torch.Generator().manual_seed(seed)
    C, F, H, W = config["in_channels"], shape["frames"], shape["height"], shape["width"]
    x = torch.randn(batch, C, F, H, W, generator=g)
    s = torch.rand(batch, generator=g)
    t = token_timesteps(s, x.shape, config["patch_size"], ti2v=True)
    text = torch.randn(batch, shape["text_len"], config["text_dim"], generator=g)
    return x, t, text


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
    p_t, p_h, p_w = den.model.config.patch_size
    if d["frames"] % p_t or d["height"] % p_h or d["width"] % p_w:
        raise InputError(f"latent frames/height/width {d['frames']}x{d['height']}x{d['width']} must be multiples of "
                         f"the patch size {tuple(den.model.config.patch_size)}")
    return d


def to_onnx_file(model: torch.nn.Module, path: Path, inputs: tuple, opset: int) -> None:
    """Export `TransformerGraph(model)` with a dynamic batch axis (dynamo exporter, quiet)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            TransformerGraph(model).eval(), inputs, None, dynamo=True, opset_version=opset, verbose=False,
            input_names=["x", "timestep", "text"], output_names=["v"],
            dynamic_shapes={"x": {0: batch}, "timestep": {0: batch}, "text": {0: batch}},
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


def max_diff_vs_torch(model: torch.nn.Module, sess, config: dict, shape: dict, batches=(1, 3)) -> float:
    """Max |onnxruntime - torch| of v over random inputs at several batch sizes."""
    graph, worst = TransformerGraph(model).eval(), 0.0
    for i, b in enumerate(batches):
        x, t, text = example_inputs(config, shape, b, seed=100 + i)
        with torch.inference_mode():
            ref = graph(x, t, text)
        out = sess.run(["v"], {"x": x.numpy(), "timestep": t.numpy(), "text": text.numpy()})[0]
        worst = max(worst, (torch.from_numpy(out) - ref).abs().max().item())
    return worst


def export_onnx(run: str, out: str, overwrite: bool = False, opset: int = MIN_OPSET, frames=None, height=None,
                width=None, text_len=None) -> tuple[Path, dict]:
    """Write RUN's student transformer as DIR/transformer.onnx (+ its description), checked against torch."""
    _require_onnx()
    import onnxruntime as ort

    check_opset(opset)
    model_dir = find_model_dir(run)
    den = load_denoiser(model_dir)
    if den.family != "wan":
        raise ModelError(f"{run} is a {type(den.model).__name__}; ONNX export supports Wan students only")
    shape = latent_shape(den, frames, height, width, text_len)
    out_dir = check_out_dir(out, overwrite, (model_dir,))
    config = dict(den.model.config)
    with atomic_dir(out_dir) as tmp:
        to_onnx_file(den.model, tmp / ONNX_FILE, example_inputs(config, shape, 2), opset)
        diff = max_diff_vs_torch(den.model, session(tmp / ONNX_FILE), config, shape)
        if diff > TOLERANCE:
            raise ModelError(f"the ONNX graph differs from torch by {diff:.2e} (> {TOLERANCE}); not written")
        copy_meta_files(model_dir, tmp, skip=("sampler.json",))
        choice = choose_sampler(model_dir)
        print(choice.line)
        choice.spec.save(tmp)  # every export says how it samples, the default Euler sampler too
        info = {"format": "onnx", "run": str(run), "model": str(model_dir), "file": ONNX_FILE, "opset": opset,
                "inputs": {"x": ["batch", config["in_channels"], shape["frames"], shape["height"], shape["width"]],
                           "timestep": ["batch", _num_tokens(config, shape)],
                           "text": ["batch", shape["text_len"], config["text_dim"]]},
                "outputs": {"v": ["batch", config["out_channels"], shape["frames"], shape["height"], shape["width"]]},
                "shape": shape, "max_abs_diff_vs_torch": diff, "checked_batches": [1, 3],
                "exporter": "torch.onnx.export(dynamo=True)", "torch": torch.__version__,
                "onnxruntime": ort.__version__}
        atomic_write_json(tmp / INFO_FILE, info)
    return out_dir, info


def _num_tokens(config: dict, shape: dict) -> int:
    p_t, p_h, p_w = config["patch_size"]
    return (shape["frames"] // p_t) * (shape["height"] // p_h) * (shape["width"] // p_w)


# ---- running it ----------------------------------------------------------------------------------
class OnnxDenoiser(Denoiser):
    """An exported transformer.onnx behind the `Denoiser` contract (no skip, no capture): the
    samplers and `fastlight sample --backend onnx` use it like the torch model."""

    family = "wan-onnx"

    def __init__(self, sess, config: dict, info: dict, null_text: torch.Tensor | None, meta: dict):
        super().__init__()
        self.session, self.config, self.info, self.meta = sess, config, info, dict(meta)
        if null_text is None:
            null_text = torch.zeros(1, 1, config["text_dim"])
        self.register_buffer("null_text", null_text.reshape(1, -1, config["text_dim"]).float(), persistent=False)

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
        null = read_safetensors(null_file, ModelError, fix).get("null_text") if null_file.is_file() else None
        return cls(session(path / ONNX_FILE, threads), config, info, null, meta)

    def forward(self, x_t, s, cond: Cond, skip=(), capture=None):
        """v = eps - x0 from onnxruntime; TI2V as in `WanDenoiser` (clean first frame, timestep 0, v 0)."""
        if tuple(skip) or capture is not None:
            raise InputError("the ONNX backend runs the exported graph as is: it cannot skip or capture blocks")
        expected = tuple(self.info.get("inputs", {}).get("x", [None])[1:])
        if expected and tuple(x_t.shape[1:]) != expected:
            raise InputError(f"x_t has shape {tuple(x_t.shape[1:])} per sample; the ONNX graph was exported for {expected}")
        s = torch.as_tensor(s, dtype=torch.float32).expand(x_t.shape[0]) if torch.as_tensor(s).ndim == 0 else s
        if cond.image is not None:
            x_t = torch.cat([cond.image.to(x_t), x_t[:, :, 1:]], dim=2)
        t = token_timesteps(s.cpu(), x_t.shape, self.config["patch_size"], ti2v=cond.image is not None)
        feed = {"x": x_t.detach().float().cpu().numpy(), "timestep": t.numpy(),
                "text": cond.text.detach().float().cpu().numpy()}
        v = torch.from_numpy(self.session.run(["v"], feed)[0]).to(x_t.device, x_t.dtype)
        if cond.image is not None:
            v = torch.cat([torch.zeros_like(v[:, :, :1]), v[:, :, 1:]], dim=2)
        return v

    def block_infos(self):
        return []
