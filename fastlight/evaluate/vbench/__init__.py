"""VBench-style video quality dimensions, weight-free, on any folder of MP4/GIF videos.

VBench (Huang et al., CVPR 2024, github.com/Vchitect/VBench) scores generated videos
along "dimensions". Most of them run a pretrained network (RAFT, AMT, DINO, CLIP,
MUSIQ, DreamSim, LAION aesthetic head). This package follows VBench's definitions --
frame sampling, per-video formula, normalisation to [0, 1], averaging over videos --
and replaces each network by a weight-free stand-in from OpenCV/numpy. Every result
says which it is:

* ``exact``  -- VBench's own computation, no stand-in takes part (temporal flickering with
                the static filter off: the formula needs no network);
* ``proxy``  -- VBench's protocol and formula, a weight-free estimator inside;
* ``n/a``    -- cannot be approximated honestly without weights (aesthetic quality).

Dimension           kind   what replaces VBench's network
------------------  -----  --------------------------------------------------------------
temporal_flickering proxy  exact formula (mean |frame diff|), but the static-video filter that
                           picks which videos it scores uses OpenCV flow instead of RAFT;
                           exact with static_filter=False (every video scored)
dynamic_degree      proxy  exact protocol (~8 fps sampling, top-5 % flow magnitude,
                           thres 6*min(H,W)/256 * max(1, 8/fps), count round(4N/16));
                           OpenCV DIS optical flow instead of RAFT
motion_smoothness   proxy  exact protocol (even frames -> interpolate odd ones,
                           (255 - MAE)/255); flow-based midpoint warp instead of AMT-S
subject_consistency proxy  VBench formula (mean of cos(prev) and cos(first), clamped >= 0)
                           over HOG + Lab-thumbnail features instead of DINO ViT-B/16
background_cons.    proxy  same formula over HSV-histogram + colour-layout features
                           instead of CLIP ViT-B/32
i2v_subject         proxy  0.5 max cos(image, frame) + 0.5 mean cos(consecutive),
                           HOG + Lab features instead of DINO
i2v_background      proxy  0.4 max + 0.3 mean + 0.3 min, HSV/layout features instead of
                           DreamSim
imaging_quality     proxy  sharpness x noise x exposure x contrast in [0, 1] instead of
                           MUSIQ-SPAQ / 100
aesthetic_quality   n/a    (LAION aesthetic predictor on CLIP ViT-L/14)

Files, one purpose each: ``dimensions`` (the registry above and the input checks), ``frames``
(input normalisation), ``flow`` (optical flow, interpolation), ``motion`` (temporal flickering,
dynamic degree, motion smoothness), ``consistency`` (subject / background, I2V), ``quality``
(imaging / aesthetic), ``score`` (`score_videos`: many videos), ``folder`` (`evaluate_folder`: a
folder of files), ``official`` (``backend="vbench"``: the official package). The command is
``fastlight vbench FOLDER``; the synthetic-video checks with known answers are in
``tests/evaluate/test_vbench_known_answers.py`` (``fastlight vbench --validate`` prints them).
The official backend has been tested only against a stand-in of the ``vbench`` package: its results
carry ``"status": "not run here"`` (`official.NOT_RUN_HERE`) until a test runs the real package.
"""
from fastlight.evaluate.vbench.consistency import (background_consistency, background_features, i2v_background,
                                                   i2v_subject, subject_consistency, subject_features)
from fastlight.evaluate.vbench.dimensions import DIMENSIONS, STAND_INS, dimension_kind, stand_ins
from fastlight.evaluate.vbench.flow import interpolate_midpoint, optical_flow
from fastlight.evaluate.vbench.folder import BACKENDS, evaluate_folder
from fastlight.evaluate.vbench.motion import (dynamic_degree, dynamic_degree_details, is_static, motion_smoothness,
                                              temporal_flickering)
from fastlight.evaluate.vbench.official import NOT_RUN_HERE, VBenchUnavailable
from fastlight.evaluate.vbench.quality import aesthetic_quality, imaging_quality, imaging_quality_components
from fastlight.evaluate.vbench.score import score_videos

__all__ = [
    "DIMENSIONS", "STAND_INS", "dimension_kind", "stand_ins", "BACKENDS", "NOT_RUN_HERE", "VBenchUnavailable", "temporal_flickering", "is_static", "dynamic_degree",
    "dynamic_degree_details", "motion_smoothness", "interpolate_midpoint", "subject_consistency",
    "background_consistency", "i2v_subject", "i2v_background", "imaging_quality", "imaging_quality_components",
    "aesthetic_quality", "optical_flow", "subject_features", "background_features", "score_videos",
    "evaluate_folder",
]
