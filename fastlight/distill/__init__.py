"""Stage III: few-step distillation (DMD2 with the well-guided teacher, see dmd.py)."""
