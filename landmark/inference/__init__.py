"""Fast inference: ONNX export (fp32 and INT8) and the predictor used by ``landmark predict`` and the demo."""
