"""Is an INT8 ONNX model worth serving? Post-training static quantization (ONNX Runtime, calibrated on training
photos) of the default backbone with ImageNet's own classifier, against the float32 model it came from.

    .venv/bin/python bench/int8.py

Figures: images/s at batch 1 and 8 for float32 and two INT8 variants (QOperator and QDQ, per-channel weights,
convolutions and the classifier quantized), and top-1 agreement with float32 on held-out photos (every 12th photo
of train/, none of them used for calibration). dogbreed would serve INT8 only if agreement were at least 99% and
it were faster. Writes bench/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def throughput(session, x: np.ndarray, seconds: float = 4.0) -> float:
    session.run(None, {"input": x})
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        session.run(None, {"input": x})
        n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dogbreed.data.images import decode_to_square
    from dogbreed.models.inference import ServedModel
    from dogbreed.models.registry import create_model, get_backbone
    from dogbreed.preprocessing import to_input

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "int8.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dogbreed-int8-"))
    backbone = get_backbone("efficientnet_lite0")
    model, _ = create_model(backbone, 1000, pretrained=True)
    served = ServedModel(model.eval(), flip=False).eval()
    torch.onnx.export(served, (torch.zeros(1, 3, 224, 224),), str(work / "fp32.onnx"), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["probabilities"],
                      dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}})
    photos = sorted((Path(args.data) / "train").rglob("*.jpg"))
    held_out, calibration = photos[::12][:300], photos[5::60][:128]

    def arrays(files: list[Path]) -> np.ndarray:
        squares = np.stack([decode_to_square(f.read_bytes(), backbone.preprocessing) for f in files])
        return to_input(squares, backbone.preprocessing).numpy()

    x_eval, x_cal = arrays(held_out), arrays(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(x_cal):
                return None
            self.i += 8
            return {"input": np.ascontiguousarray(x_cal[self.i - 8:self.i])}

    quant_pre_process(str(work / "fp32.onnx"), str(work / "pre.onnx"))
    variants = {"int8_qoperator": QuantFormat.QOperator, "int8_qdq": QuantFormat.QDQ}
    for name, fmt in variants.items():
        quantize_static(str(work / "pre.onnx"), str(work / f"{name}.onnx"), Reader(), quant_format=fmt,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul"])
    results: dict = {"backbone": backbone.name, "held_out_photos": len(held_out), "calibration_photos": len(x_cal)}
    top1 = {}
    for name in ("fp32", *variants):
        s = ort.InferenceSession(str(work / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        out = np.concatenate([s.run(None, {"input": np.ascontiguousarray(x_eval[i:i + 16])})[0]
                              for i in range(0, len(x_eval), 16)])
        top1[name] = out.argmax(1)
        results[name] = {"images_per_s_batch_1": round(throughput(s, np.ascontiguousarray(x_eval[:1])), 1),
                         "images_per_s_batch_8": round(throughput(s, np.ascontiguousarray(x_eval[:8])), 1)}
    for name in variants:
        results[name]["top1_agreement_with_fp32"] = round(float((top1[name] == top1["fp32"]).mean()), 4)
        results[name]["speed_ratio_batch_8"] = round(results[name]["images_per_s_batch_8"] /
                                                      results["fp32"]["images_per_s_batch_8"], 3)
    results["served"] = "fp32" if all(results[n]["top1_agreement_with_fp32"] < 0.99 or
                                      results[n]["speed_ratio_batch_8"] <= 1.0 for n in variants) else "int8"
    results["rule"] = "INT8 only with top-1 agreement >= 0.99 and a speed-up"
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(results, indent=1))
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
