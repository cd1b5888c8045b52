"""Stage I: which blocks (depth) and which heads / FFN units (width) matter.

    calib.py       fixed calibration sets (common random numbers for every block)
    importance.py  ELBO (Tweedie denoising error) block importance, data and data-free,
                   iterative variant, VDMini metric-drop importance, importance.json, tables, plot,
                   `analyze_command` (the `fastlight analyze` verb)
    taylor.py      Lightning Video width saliency w_i^T X^T X w_i from forward hooks (taylor.json)
    plans.py       depth / width pruning plans (plan.json) that `fastlight/prune` executes
"""
