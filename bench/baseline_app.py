"""The serving benchmark's baselines: a plain FastAPI endpoint running the PyTorch model per request.

Same model file; a full decode of every photo and timm's eval transform; no ONNX, no micro-batching. With
BASELINE_FLIP=1 (the default) the softmax is averaged with the mirror image (two forward passes, the same outputs
as dogbreed's flip models); with BASELINE_FLIP=0 it is one forward pass per request.
Started by bench/serve.py as `uvicorn bench.baseline_app:app` with BASELINE_MODEL_DIR set.
"""

import io
import json
import os
from pathlib import Path

import timm
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from safetensors.torch import load_file

model_dir = Path(os.environ["BASELINE_MODEL_DIR"])
card = json.loads((model_dir / "model.json").read_text())
model = timm.create_model(card["timm_name"], num_classes=len(card["class_folders"]))
# dogbreed's model also keeps the backbone's ImageNet classifier (its not-a-dog score): a plain endpoint has none
model.load_state_dict({k: v for k, v in load_file(str(model_dir / "model.safetensors")).items()
                       if not k.startswith("imagenet_head.")})
model.eval()
prep = card["preprocessing"]
transform = timm.data.create_transform(input_size=(3, prep["input_size"], prep["input_size"]), mean=prep["mean"],
                                       std=prep["std"], crop_pct=prep["crop_pct"], interpolation=prep["interpolation"])
flip = os.environ.get("BASELINE_FLIP", "1") == "1"
app = FastAPI()


@app.get("/ping")
def ping():
    return {"status": "ok"}


@app.post("/invocations")
async def invocations(request: Request):
    x = transform(Image.open(io.BytesIO(await request.body())).convert("RGB"))[None]
    with torch.no_grad():
        p = (model(x).softmax(-1) + model(x.flip(3)).softmax(-1)) / 2 if flip else model(x).softmax(-1)
    return JSONResponse(p[0].tolist())
