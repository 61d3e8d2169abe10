"""Serving: ONNX export, the breed-classifier API (setup, decode, predict, encode), the HTTP endpoint, batch transform."""
