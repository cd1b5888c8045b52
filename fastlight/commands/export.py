"""`fastlight export RUN --format diffusers|onnx --out DIR`; the work lives in `fastlight/export/to_diffusers.py`
and `to_onnx.py`."""
from __future__ import annotations

from fastlight.commands.options import output_folder, whole_number
from fastlight.fileio import read_json_object


def add_parser(sub) -> None:
    s = sub.add_parser("export", help="a trained student as a diffusers pipeline folder or an ONNX transformer")
    s.add_argument("run", help="run folder (with model/), model folder, or 'shapes-teacher'")
    s.add_argument("--format", required=True, choices=["diffusers", "onnx"])
    s.add_argument("--out", type=output_folder, required=True, help="output folder (must be absent or empty, unless --overwrite)")
    s.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    s.add_argument("--source", default=None,
                   help="diffusers: the pipeline folder the student came from, whose vae / text encoders / "
                        "tokenizers are linked (default: found from the model folder or its fastlight.json teacher "
                        "chain; needed for Wan / HunyuanVideo students, none for the Shapes models)")
    s.add_argument("--opset", type=whole_number, default=18, help="onnx: opset version (18 .. what onnxruntime runs)")
    s.add_argument("--frames", type=whole_number, default=None, help="onnx, non-Shapes models: latent frames")
    s.add_argument("--height", type=whole_number, default=None, help="onnx, non-Shapes models: latent height")
    s.add_argument("--width", type=whole_number, default=None, help="onnx, non-Shapes models: latent width")
    s.add_argument("--text-len", type=whole_number, default=None,
                   help="onnx, non-Shapes models: text tokens (Wan: 512; HunyuanVideo: the padded prompt length)")
    s.set_defaults(fn=run)


def run(a) -> None:
    if a.format == "diffusers":
        from fastlight.export.to_diffusers import export_diffusers

        out = export_diffusers(a.run, a.out, overwrite=a.overwrite, source=a.source)
        cls = read_json_object(out / "model_index.json")["_class_name"]
        print(f"diffusers pipeline written to {out} (load it with {cls}.from_pretrained; the call's arguments are in "
              f"{out / 'fastlight_export.json'})")
    else:
        from fastlight.export.to_onnx import export_onnx

        out, info = export_onnx(a.run, a.out, overwrite=a.overwrite, opset=a.opset, frames=a.frames,
                                height=a.height, width=a.width, text_len=a.text_len)
        print(f"ONNX transformer written to {out}/transformer.onnx (opset {info['opset']}, dynamic batch; "
              f"max |onnxruntime - torch| {info['max_abs_diff_vs_torch']:.1e}); "
              f"sample with `fastlight sample --backend onnx --model {out}`")
