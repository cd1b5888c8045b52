"""`fastlight fvd REAL GENERATED --detector NET`: Frechet video distance of two folders of videos."""
from __future__ import annotations

from fastlight.commands.options import output_file, whole_number


def add_parser(sub) -> None:
    s = sub.add_parser("fvd", help="Frechet video distance of two folders of videos with a detector you supply")
    s.add_argument("real", help="folder of reference *.mp4 / *.gif videos")
    s.add_argument("generated", help="folder of generated *.mp4 / *.gif videos")
    s.add_argument("--detector", required=True,
                   help="TorchScript feature network, e.g. StyleGAN-V's i3d_torchscript.pt; trusted input: it is "
                        "code that runs here, load only a file you chose")
    s.add_argument("--batch-size", type=whole_number, default=16)
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", type=output_file, default=None, help="write the result JSON here")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.evaluate.fvd import fvd_folders

    res = fvd_folders(a.real, a.generated, a.detector, batch_size=a.batch_size, device=a.device, out_json=a.out)
    print(f"FVD_{res['num_frames']} {res['fvd']:.4f} ({res['num_real']} real vs {res['num_generated']} generated "
          f"video(s); detector {res['detector']}, sha256 {res['detector_sha256'][:12]})")
    print(f"detector status: {res['status']}")
    for side in ("real", "generated"):
        for name, why in res["unreadable"][side].items():
            print(f"skipped {side} {name}: {why}")
