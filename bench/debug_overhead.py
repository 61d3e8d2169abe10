"""Debugger + profiler overhead: fine-tuning step time with them on against off, same data, same run.

    .venv/bin/python bench/debug_overhead.py [--steps 30] [--rounds 3]

Writes bench/results/debug_overhead.json. Rounds alternate on/off so machine noise hits both alike; the target is
under 5% overhead at the default recording interval (every 10 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "debug_overhead.json"))
    args = ap.parse_args()
    os.environ.setdefault("DOGBREED_HOME", tempfile.mkdtemp(prefix="dogbreed-bench-"))
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_slice  # the same real-photo slices the tests use

    from dogbreed.data.batches import BatchSource
    from dogbreed.data.cache import load_or_build
    from dogbreed.data.layout import discover
    from dogbreed.debug.monitor import DebuggerConfig, DebugSession
    from dogbreed.models.registry import create_model, get_backbone
    from dogbreed.train.recipe import freeze_for_mode
    from dogbreed.train.trainer import Callback, Trainer, TrainerConfig

    root = Path(tempfile.mkdtemp()) / "slice"
    classes = sorted(p.name for p in (Path(args.data) / "train").iterdir())[:10]
    make_slice(root, tuple(classes), 20, 2)
    spec = get_backbone("efficientnet_lite0")
    layout = discover(root)
    train = load_or_build(layout.splits["train"], spec.preprocessing, layout.class_index(), 2)

    class StepTimes(Callback):
        def __init__(self):
            self.times = []

        def on_step_end(self, trainer, step):
            self.times.append(step.total_s)

    def run(with_debugger: bool) -> float:
        torch.manual_seed(0)
        model, _ = create_model(spec, len(classes), pretrained=True)
        trainable = freeze_for_mode(model, "last_blocks", 2).to(memory_format=torch.channels_last)
        params = [p for p in trainable.parameters() if p.requires_grad]
        src = BatchSource(train.images, train.labels, spec.preprocessing, 16, train=True, augmentation="crop")
        steps = StepTimes()
        callbacks = [steps]
        session = None
        if with_debugger:
            session = DebugSession(DebuggerConfig(interval=args.interval), Path(tempfile.mkdtemp()))
            session.start()
            callbacks = session.callbacks("finetune") + callbacks
        epochs = -(-args.steps // len(src))
        Trainer(trainable, src, None, torch.optim.AdamW(params, 1e-4),
                TrainerConfig(epochs=epochs, stage="finetune"), callbacks=callbacks).fit()
        if session is not None:
            session.finish()
        return median(steps.times[1:args.steps])  # the first step warms up

    on, off = [], []
    for r in range(args.rounds):
        for flag in ((False, True) if r % 2 == 0 else (True, False)):
            (on if flag else off).append(run(flag))
            print("debugger" if flag else "plain", round((on if flag else off)[-1] * 1000, 1), "ms/step", flush=True)
    result = {"steps_per_run": args.steps, "rounds": args.rounds, "interval": args.interval,
              "median_step_ms_debugger_on": round(median(on) * 1000, 2),
              "median_step_ms_debugger_off": round(median(off) * 1000, 2),
              "overhead_ratio": round(median(on) / median(off), 4),
              "target": "< 1.05", "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
