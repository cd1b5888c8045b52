"""Lightning Video width saliency: second-order Taylor scores of FFN units and attention heads.

For a linear layer Y = X W^T + 1 b (X: (n tokens, d_in), W: (d_out, d_in)) pruning output row i
(Delta w_i = -w_i, Delta b_i = -b_i) changes the layer's squared-error loss, to second order
around a converged model (gradient ~ 0), by (Lightning Video eq. 3 / appendix eq. 12-13):

    I_i = w_i^T (X^T X) w_i + 2 b_i (1^T X) w_i + n b_i^2  =  sum_tokens (x w_i + b_i)^2

i.e. the squared norm of row i's output over the calibration tokens (the bias follows "the same
formulation as w_i"). No backward pass: forward hooks accumulate, per distinct layer input,
G = X^T X (d_in x d_in, float64), the column sums 1^T X (d_in,) and n, over the calibration
forwards of the FULL model; `row_saliency` then scores every row at once.

What is scored (per block; paper: "row-wise dimensions ... ffn_dim and the number of heads"):
  ffn   (ffn_dim,)   rows of the FFN's first linear (Wan `ffn.net[0].proj`; HunyuanVideo double
                     `ff.net[0].proj` + `ff_context.net[0].proj`, single `proj_mlp`): the units.
  heads (num_heads,) rows of the q/k/v projections (Wan: attn1.to_q/k/v and attn2.to_q/k/v
                     [+ add_k/v_proj]; HunyuanVideo: to_q/k/v [+ add_q/k/v_proj]), summed over
                     each head's head_dim rows (and over both attentions of a Wan block, since a
                     plan keeps the same head ids in both).
The matching input COLUMNS of the consumer layer (Wan `ffn.net[2]`, `to_out[0]`; HunyuanVideo
`ff.net[2]`, `to_out[0]`, `to_add_out`, single `proj_out`) are pruned together with those rows.
They are scored as well, as `ffn_out` / `heads_out`. Choice of X for that output side: the
consumer layer's OWN input (the post-GELU FFN activations, the attention output before the
output projection), because pruning unit / head g zeroes exactly the input columns X_g of that
layer, whose output then changes by X_g W_g^T; its squared norm over the tokens is

    I_g^out = || X_g W_g^T ||_F^2 = tr(W_g (X_g^T X_g) W_g^T)      (exact, no Taylor truncation)

which needs only the diagonal blocks of that layer's X^T X (per head: head_dim x head_dim; per
FFN unit: one number). Using the block's input instead would score the producer rows again.
`heads`/`ffn` (the paper's row scores) are the default for `plans.width_plan`; `*_out` are there
to compare.

Memory: `accumulate="gram"` keeps one d_in x d_in float64 matrix per distinct row-layer input
(Wan: 3-4 per block: self-attn input, cross-attn query input, text input, FFN input).
`accumulate="direct"` instead sums each row's squared output directly (O(d_out) per layer;
for large models) and gives the same numbers up to rounding.

Which layers those are is architecture knowledge, so the adapters say it (`width_modules` in
fastlight/models/wan.py and hunyuan.py, the layer names above are theirs); this module only scores
the rows and columns it is given. HunyuanVideo (double and single blocks) goes the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fastlight.analyze.calib import CalibrationSet
from fastlight.analyze.io import atomic_write_json, check_fingerprint, read_json
from fastlight.diffusion.flow import add_noise
from fastlight.errors import InputError, ModelError
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import model_fingerprint


# ---- where the heads and FFN units of a block live ---------------------------------------------
@dataclass
class WidthLayout:
    """The prunable width of one block, by submodule.

    head_rows / ffn_rows: groups of linears that read the SAME input (the first one is hooked);
    their output rows are heads x head_dim (resp. the ffn_dim units).
    head_cols / ffn_cols: (linear, column offset): consumer layers whose input columns
    [offset + g * width, ...) belong to head / unit g.
    head_norms: norms with one weight per (head, channel) (Wan's RMSNorm across heads), whose
    head_dim weights per head go with the head.
    """

    kind: str
    num_heads: int
    head_dim: int
    ffn_dim: int
    head_rows: list[list[nn.Linear]]
    head_cols: list[tuple[nn.Linear, int]]
    ffn_rows: list[list[nn.Linear]]
    ffn_cols: list[tuple[nn.Linear, int]]
    head_norms: list[nn.Module] = field(default_factory=list)

    @property
    def params_per_head(self) -> int:
        rows = sum(lin.in_features + (lin.bias is not None) for g in self.head_rows for lin in g) * self.head_dim
        cols = sum(lin.out_features for lin, _ in self.head_cols) * self.head_dim
        norms = sum(self.head_dim for n in self.head_norms)
        return rows + cols + norms

    @property
    def params_per_ffn_unit(self) -> int:
        rows = sum(lin.in_features + (lin.bias is not None) for g in self.ffn_rows for lin in g)
        return rows + sum(lin.out_features for lin, _ in self.ffn_cols)


def _per_head_norms(attn: nn.Module, inner: int) -> list[nn.Module]:
    out = []
    for name in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
        n = getattr(attn, name, None)
        w = getattr(n, "weight", None) if n is not None else None
        if isinstance(w, torch.Tensor) and w.numel() == inner:
            out.append(n)
    return out


def _heads(attn: nn.Module) -> tuple[int, int]:
    if getattr(attn, "to_q", None) is None:
        raise ModelError("width analysis needs unfused q/k/v projections (call unfuse_qkv_projections first)")
    H = int(attn.heads)
    return H, attn.to_q.out_features // H


def width_layout(model: Denoiser, index: int) -> WidthLayout:
    """Describe block `index`'s heads and FFN units, from where its adapter says they live
    (`width_modules`, fastlight/models/wan.py and hunyuan.py)."""
    where = getattr(model, "width_modules", None)
    if where is None:
        raise ModelError(f"width analysis needs to know where the heads and FFN units of a {type(model).__name__} "
                         "live; its adapter has no width_modules (fastlight/models/)")
    m = where(index)
    H, dh = _heads(m["attentions"][0])
    for attn in m["attentions"][1:]:
        _heads(attn)
    norms = [n for attn in m["attentions"] for n in _per_head_norms(attn, H * dh)]
    return WidthLayout(m["kind"], H, dh, m["ffn_rows"][0][0].out_features, m["head_rows"], m["head_cols"],
                       m["ffn_rows"], m["ffn_cols"], norms)


# ---- accumulation --------------------------------------------------------------------------------
class GramAccumulator:
    """G = sum X^T X (d, d), sx = sum_tokens x (d,), n tokens, over every call, in float64."""

    def __init__(self, d: int, device):
        self.G = torch.zeros(d, d, dtype=torch.float64, device=device)
        self.sx = torch.zeros(d, dtype=torch.float64, device=device)
        self.n = 0

    def update(self, x: torch.Tensor) -> None:
        X = x.reshape(-1, x.shape[-1]).to(torch.float64)  # (tokens, d)
        self.G += X.T @ X
        self.sx += X.sum(0)
        self.n += X.shape[0]


def row_saliency(weight: torch.Tensor, bias: torch.Tensor | None, G: torch.Tensor, sx: torch.Tensor, n: int) -> torch.Tensor:
    """Lightning Video eq. 3 with the bias: I_i = w_i^T G w_i + 2 b_i sx . w_i + n b_i^2, all rows at
    once. weight (d_out, d_in), bias (d_out,), G (d_in, d_in) = X^T X, sx (d_in,) = 1^T X. -> (d_out,)"""
    W = weight.detach().to(torch.float64)
    score = ((W @ G) * W).sum(1)  # diag(W G W^T)
    if bias is not None:
        b = bias.detach().to(torch.float64)
        score = score + 2 * b * (W @ sx) + n * b * b
    return score


class _BlockStats:
    """Hooks and accumulators of one block."""

    def __init__(self, layout: WidthLayout, accumulate: str, device):
        self.layout, self.accumulate = layout, accumulate
        H, dh, D = layout.num_heads, layout.head_dim, layout.ffn_dim
        if accumulate == "gram":
            self.head_in = [GramAccumulator(g[0].in_features, device) for g in layout.head_rows]
            self.ffn_in = [GramAccumulator(g[0].in_features, device) for g in layout.ffn_rows]
        else:  # direct: per linear, per row sum of squared outputs
            self.head_in = [[torch.zeros(lin.out_features, dtype=torch.float64, device=device) for lin in g] for g in layout.head_rows]
            self.ffn_in = [[torch.zeros(lin.out_features, dtype=torch.float64, device=device) for lin in g] for g in layout.ffn_rows]
        self.head_out = [torch.zeros(H, dh, dh, dtype=torch.float64, device=device) for _ in layout.head_cols]
        self.ffn_out = [torch.zeros(D, dtype=torch.float64, device=device) for _ in layout.ffn_cols]
        self.calls = 0

    def hooks(self) -> list:
        handles = []
        L = self.layout
        H, dh, D = L.num_heads, L.head_dim, L.ffn_dim

        def gram_hook(acc):
            def hook(mod, inputs, output):
                acc.update(inputs[0])
            return hook

        def direct_hook(buf):
            def hook(mod, inputs, output):
                buf.add_(output.reshape(-1, output.shape[-1]).to(torch.float64).pow(2).sum(0))
            return hook

        def head_cols_hook(buf, off):
            def hook(mod, inputs, output):
                X = inputs[0][..., off:off + H * dh].reshape(-1, H, dh).to(torch.float64)  # (tokens, H, dh)
                buf.add_(torch.einsum("thi,thj->hij", X, X))
            return hook

        def ffn_cols_hook(buf, off):
            def hook(mod, inputs, output):
                X = inputs[0][..., off:off + D].reshape(-1, D).to(torch.float64)  # (tokens, D)
                buf.add_(X.pow(2).sum(0))
            return hook

        for groups, accs in ((L.head_rows, self.head_in), (L.ffn_rows, self.ffn_in)):
            for g, acc in zip(groups, accs):
                if self.accumulate == "gram":
                    handles.append(g[0].register_forward_hook(gram_hook(acc)))
                else:
                    handles += [lin.register_forward_hook(direct_hook(buf)) for lin, buf in zip(g, acc)]
        for (lin, off), buf in zip(L.head_cols, self.head_out):
            handles.append(lin.register_forward_hook(head_cols_hook(buf, off)))
        for (lin, off), buf in zip(L.ffn_cols, self.ffn_out):
            handles.append(lin.register_forward_hook(ffn_cols_hook(buf, off)))
        return handles

    def _row_scores(self, group: list[nn.Linear], acc) -> list[torch.Tensor]:
        if self.accumulate == "gram":
            if acc.n == 0:
                raise RuntimeError("a hooked layer was never called during calibration (fused projections?)")
            return [row_saliency(lin.weight, lin.bias, acc.G, acc.sx, acc.n) for lin in group]
        return list(acc)

    def scores(self) -> dict[str, torch.Tensor]:
        L = self.layout
        H, dh = L.num_heads, L.head_dim
        heads = torch.zeros(H, dtype=torch.float64)
        for g, acc in zip(L.head_rows, self.head_in):
            for s in self._row_scores(g, acc):
                heads += s.cpu().view(H, dh).sum(1)  # rows h*dh .. (h+1)*dh - 1 belong to head h
        ffn = torch.zeros(L.ffn_dim, dtype=torch.float64)
        for g, acc in zip(L.ffn_rows, self.ffn_in):
            for s in self._row_scores(g, acc):
                ffn += s.cpu()
        heads_out = torch.zeros(H, dtype=torch.float64)
        for (lin, off), Gh in zip(L.head_cols, self.head_out):
            W = lin.weight.detach().to(torch.float64)[:, off:off + H * dh].reshape(lin.out_features, H, dh)  # (out, H, dh)
            heads_out += torch.einsum("ohi,hij,ohj->h", W, Gh, W).cpu()  # tr(W_h G_h W_h^T)
        ffn_out = torch.zeros(L.ffn_dim, dtype=torch.float64)
        for (lin, off), diag in zip(L.ffn_cols, self.ffn_out):
            col_sq = lin.weight.detach().to(torch.float64)[:, off:off + L.ffn_dim].pow(2).sum(0)  # ||W[:, i]||^2
            ffn_out += (diag * col_sq).cpu()
        return {"heads": heads, "ffn": ffn, "heads_out": heads_out, "ffn_out": ffn_out}


@torch.inference_mode()
def taylor_saliency(model: Denoiser, calib: CalibrationSet, accumulate: str = "gram",
                    progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """Width saliency of every block from forward hooks over the calibration set (full model,
    x_t = (1 - s) x0 + s eps with the set's own eps and s).

    Returns {block index: {"heads": (num_heads,), "ffn": (ffn_dim,), "heads_out": (num_heads,),
    "ffn_out": (ffn_dim,)}} float64 CPU tensors (module docstring for what each means).
    """
    if accumulate not in ("gram", "direct"):
        raise InputError(f"accumulate must be 'gram' or 'direct', got {accumulate!r}")
    if calib.num_samples < 1:
        raise InputError("calibration set is empty: it holds no samples")
    p = next(model.parameters())
    stats = {b.index: _BlockStats(width_layout(model, b.index), accumulate, p.device) for b in model.blocks}
    handles = [h for st in stats.values() for h in st.hooks()]
    from tqdm.auto import tqdm

    try:
        for batch in tqdm(calib, disable=not progress, desc="Taylor saliency", leave=False):
            x0, eps, s = batch.x0.to(p.device).float(), batch.eps.to(p.device).float(), batch.s.to(p.device).float()
            model(add_noise(x0, eps, s).to(p.dtype), s, batch.cond.to(p.device))
    finally:
        for h in handles:
            h.remove()
    return {i: st.scores() for i, st in stats.items()}


# ---- taylor.json ----------------------------------------------------------------------------------
SCORE_KEYS = ("heads", "ffn", "heads_out", "ffn_out")


def write_taylor(path: str | Path, model: Denoiser, scores: dict[int, dict[str, torch.Tensor]], meta: dict | None = None) -> Path:
    """taylor.json: {"fingerprint", "family", "method": "taylor", "calib", "blocks": [{"index", "kind",
    "kind_index", "num_heads", "head_dim", "ffn_dim", "params_per_head", "params_per_ffn_unit",
    "heads": [...], "ffn": [...], "heads_out": [...], "ffn_out": [...]}]}, written atomically."""
    meta = dict(meta or {})
    blocks = []
    for b in model.blocks:
        if b.index not in scores:
            continue
        L = width_layout(model, b.index)
        row = {"index": b.index, "kind": b.kind, "kind_index": b.kind_index, "num_heads": L.num_heads,
               "head_dim": L.head_dim, "ffn_dim": L.ffn_dim, "params_per_head": L.params_per_head,
               "params_per_ffn_unit": L.params_per_ffn_unit}
        row.update({k: [float(v) for v in scores[b.index][k]] for k in SCORE_KEYS if k in scores[b.index]})
        blocks.append(row)
    doc = {"fingerprint": model_fingerprint(model), "family": model.family, "method": "taylor",
           "calib": meta.pop("calib", {}), **meta, "blocks": blocks}
    return atomic_write_json(path, doc)


def read_taylor(path: str | Path, model: Denoiser | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Read taylor.json -> {block index: {"heads", "ffn", ...: float64 tensors}}; with `model`, refuse
    a file computed on another model and check the sizes."""
    doc = read_json(path, "Taylor saliency")
    if doc.get("method") != "taylor" or not isinstance(doc.get("blocks"), list) or "fingerprint" not in doc:
        raise InputError(f"{path} is not a taylor.json (method 'taylor' with 'blocks'); run fastlight analyze --methods taylor")
    if model is not None:
        check_fingerprint(doc, model, f"Taylor file {path}")
    out = {}
    for r in doc["blocks"]:
        i = r.get("index")
        if not isinstance(i, int) or "heads" not in r or "ffn" not in r:
            raise InputError(f"Taylor file {path}: each block needs index, heads and ffn")
        if model is not None:
            if not 0 <= i < model.num_blocks:
                raise InputError(f"Taylor file {path} names block {i} but the model has blocks 0..{model.num_blocks - 1}")
            L = width_layout(model, i)
            if len(r["heads"]) != L.num_heads or len(r["ffn"]) != L.ffn_dim:
                raise InputError(f"Taylor file {path}: block {i} has {len(r['heads'])} heads / {len(r['ffn'])} FFN units, "
                                 f"the model {L.num_heads} / {L.ffn_dim}; re-run fastlight analyze")
        out[i] = {k: torch.tensor(r[k], dtype=torch.float64) for k in SCORE_KEYS if k in r}
    return out


def print_taylor(scores: dict[int, dict[str, torch.Tensor]], model: Denoiser | None = None) -> None:
    """A rich table: per block, head saliencies and the FFN units' min / median / max."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Taylor width saliency (w^T X^T X w, summed per head)")
    for col in ("block", "heads (in)", "least head", "ffn min", "ffn median", "ffn max"):
        t.add_column(col, justify="right")
    for i in sorted(scores):
        h, f = scores[i]["heads"], scores[i]["ffn"]
        t.add_row(str(i), " ".join(f"{v:.3g}" for v in h.tolist()), str(int(h.argmin())), f"{float(f.min()):.3g}",
                  f"{float(f.median()):.3g}", f"{float(f.max()):.3g}")
    Console().print(t)
