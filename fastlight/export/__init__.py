"""Export a trained student: a stock diffusers pipeline folder, or ONNX."""
