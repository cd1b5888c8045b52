"""Stage I: which blocks (depth) and which heads / FFN units (width) matter.

    calib.py       fixed calibration sets (common random numbers for every block), drawn from a data
                   source's `calibration` stream or a latents file
    defaults.py    what a model folder is analysed with (its calibration data, its video metric):
                   its fastlight.json, or a `fastlight.model_defaults` plug-in
    importance.py  ELBO (Tweedie denoising error) block importance, data and data-free,
                   iterative variant, VDMini metric-drop importance (metrics: `fastlight.metrics`
                   plug-ins), importance.json, tables, plot, `compute_importance` (all of `fastlight analyze`)
    taylor.py      Lightning Video width saliency w_i^T X^T X w_i from forward hooks (taylor.json)
    plans.py       the Plan value: depth / width pruning plans (plan.json) that `fastlight/prune` executes
"""
