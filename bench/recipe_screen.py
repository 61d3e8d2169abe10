"""Screening of recipe ideas on a subset of breeds, judged on a held-out part of train/ only (valid/ is not read).

    PYTHONPATH=src python bench/recipe_screen.py [--data ../shared/datasets/stanford-dogs-120] [--every 6]
        [--configs efficientnet_lite2@260,efficientnet_lite2@292,efficientnet_lite1@240] [--crops 2]

Every `--every`-th breed of train/ is used; 25% of each breed's photos are held out. For each backbone at each input
size, features of the centre crop, its mirror and `--crops` random resized crops are computed once (cached under
DOGBREED_HOME); heads are then trained on them with variations of the recipe and scored on the held-out photos.
Writes bench/results/recipe_screen.json (accumulating: a rerun with other configs adds to it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "stanford-dogs-120"))
    ap.add_argument("--every", type=int, default=6)
    ap.add_argument("--configs", default="efficientnet_lite2@260")
    ap.add_argument("--crops", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=0, help="also fine-tune the last block (cached input)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "recipe_screen.json"))
    args = ap.parse_args()

    from dogbreed.data.cache import load_or_build
    from dogbreed.data.layout import Split, discover, readable_label
    from dogbreed.models.registry import create_model, get_backbone, with_input_size
    from dogbreed.train.holdout import holdout_mask
    from dogbreed.train.features import weights_id
    from dogbreed.train.view_features import extract_view_features, view_names

    layout = discover(Path(args.data))
    classes = list(layout.classes)[::args.every]
    train = layout.splits["train"]
    keep = [i for i, c in enumerate(train.labels) if c in classes]
    subset = Split("train", tuple(train.files[i] for i in keep), tuple(train.labels[i] for i in keep))
    index = {c: i for i, c in enumerate(classes)}
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results.setdefault("runs", {})
    correct_by_config: dict[str, np.ndarray] = {}  # per held-out photo, for the paired comparison
    results["setup"] = {"breeds": len(classes), "photos": len(keep), "holdout_fraction": 0.25,
                        "data": args.data, "split": "train/ only"}
    for config in args.configs.split(","):
        name, size = config.split("@")
        spec = with_input_size(get_backbone(name), int(size))
        t0 = time.perf_counter()
        cached = load_or_build(subset, spec.preprocessing, index, 2)
        model, imagenet_head = create_model(spec, len(classes), pretrained=True)
        views = view_names(args.crops)
        vf = extract_view_features(model, cached.images, weights_id(name, None, True, 0), cached.key,
                                   spec.preprocessing, views, keep_activations=args.finetune_epochs > 0)
        extract_s = time.perf_counter() - t0
        held = holdout_mask(cached.labels, 0.25, seed=0)
        pairs = [(c, readable_label(c)) for c in classes]
        run = {"extract_s": round(extract_s, 1), "views": list(views), "n_fit": int((~held).sum()),
               "n_holdout": int(held.sum())}
        run["heads"] = score_heads(vf.features, cached.labels, held, imagenet_head, pairs, correct_by_config,
                                   config)
        if args.finetune_epochs:
            run["finetune_last_block"] = finetune_last_block(model, vf, cached.labels, held, imagenet_head, pairs,
                                                             args.finetune_epochs)
        results["runs"][f"{config}|{len(classes)}breeds"] = run
        print(config, json.dumps(run, indent=1), flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
    if len(correct_by_config) > 1:
        results["paired"] = paired_differences(correct_by_config)
        print(json.dumps(results["paired"], indent=1))
        out_path.write_text(json.dumps(results, indent=1))
    print(f"wrote {out_path}")


def paired_differences(correct: dict[str, np.ndarray]) -> dict:
    """Top-1 differences between configs on the same held-out photos, with their standard error (the photos are
    paired, so the noise of which photos were held out cancels): a difference under two standard errors is noise."""
    names = list(correct)
    out = {"how": "head anchor 0.1 on centre + mirror features, served views as named; difference of held-out "
                  "top-1 (later minus first config) and its paired standard error"}
    base = names[0]
    for name in names[1:]:
        d = correct[name].astype(float) - correct[base].astype(float)
        out[f"{name} - {base}"] = {"difference": round(float(d.mean()), 4),
                                   "standard_error": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4),
                                   "photos_won": int((d > 0).sum()), "photos_lost": int((d < 0).sum())}
    return out


def fit_head(feats, labels, imagenet_head, pairs, *, anchor=0.1, epochs=10, lr=1e-3, smoothing=0.1, seed=0,
             imagenet_init=True):
    from torch import nn

    from dogbreed.config import Hyperparameters
    from dogbreed.models.imagenet import init_head_from_imagenet
    from dogbreed.train.features import FeatureBatches
    from dogbreed.train.recipe import AnchoredLoss, make_optimizer, make_scheduler
    from dogbreed.train.trainer import Trainer, TrainerConfig

    torch.manual_seed(seed)
    head = nn.Linear(feats.shape[-1], len(pairs))
    if imagenet_init:
        init_head_from_imagenet(head, imagenet_head, pairs)
    hp = Hyperparameters(learning_rate=lr, label_smoothing=smoothing)
    opt = make_optimizer(list(head.parameters()), hp, lr)
    trainer = Trainer(nn.Sequential(nn.Dropout(0.2), head), FeatureBatches(feats, labels, 32, train=True, seed=seed),
                      None, opt, TrainerConfig(epochs=epochs), loss_fn=AnchoredLoss(head, anchor, smoothing),
                      scheduler=make_scheduler(opt, hp, epochs))
    trainer.fit()
    return head.eval()


@torch.no_grad()
def scores(head, feats, labels):
    """Held-out top-1 with the centre view only and with centre + mirror averaged; NLL of the latter."""
    x = torch.from_numpy(np.ascontiguousarray(feats))
    p0 = head(x[:, 0]).softmax(-1)
    p01 = (p0 + head(x[:, 1]).softmax(-1)) / 2
    y = torch.from_numpy(labels)
    return {"center": round(float((p0.argmax(1) == y).float().mean()), 4),
            "center_flip": round(float((p01.argmax(1) == y).float().mean()), 4),
            "nll_center": round(float(torch.nn.functional.nll_loss(p0.clamp_min(1e-12).log(), y)), 4)}


def score_heads(features, labels, held, imagenet_head, pairs, correct_by_config=None, config=""):
    fit, hold = features[~held], features[held][:, :2]
    fy, hy = labels[~held], labels[held]
    out = {}
    zero = torch.nn.Linear(features.shape[-1], len(pairs))
    from dogbreed.models.imagenet import init_head_from_imagenet

    init_head_from_imagenet(zero, imagenet_head, pairs)
    out["imagenet_rows_no_training"] = scores(zero.eval(), hold, hy)
    variants = {
        "centerflip_anchor0.1": dict(views=2, anchor=0.1),
        "crops_anchor0.1": dict(views=None, anchor=0.1),
        "centerflip_anchor0.01": dict(views=2, anchor=0.01),
        "crops_anchor0.01": dict(views=None, anchor=0.01),
        "crops_anchor0": dict(views=None, anchor=0.0),
        "crops_anchor0.01_20ep": dict(views=None, anchor=0.01, epochs=20),
        "crops_anchor0.1_20ep": dict(views=None, anchor=0.1, epochs=20),
        "crops_fresh_head_20ep": dict(views=None, anchor=0.0, epochs=20, imagenet_init=False),
    }
    for name, v in variants.items():
        v = dict(v)
        views = v.pop("views")
        f = fit if views is None else fit[:, :views]
        t = time.perf_counter()
        head = fit_head(np.ascontiguousarray(f), fy, imagenet_head, pairs, **v)
        out[name] = {**scores(head, hold, hy), "fit_s": round(time.perf_counter() - t, 1)}
        if name == "centerflip_anchor0.1" and correct_by_config is not None:
            x = torch.from_numpy(np.ascontiguousarray(hold))
            with torch.no_grad():
                center = head(x[:, 0])
                both = center.softmax(-1) + head(x[:, 1]).softmax(-1)
            correct_by_config[f"{config} one view"] = (center.argmax(1) == torch.from_numpy(hy)).numpy()
            correct_by_config[f"{config} with flip"] = (both.argmax(1) == torch.from_numpy(hy)).numpy()
        print(name, out[name], flush=True)
    return out


def finetune_last_block(model, vf, labels, held, imagenet_head, pairs, epochs):
    """LP-FT as the best preset does it (dogbreed.train.partial_features): linear head first, then the last
    block, final convolution and head on the cached last-block input of every view."""
    import copy

    from dogbreed.config import Hyperparameters
    from dogbreed.train.partial_features import finetune_last_block as finetune, refeaturize

    head = fit_head(np.ascontiguousarray(vf.features[~held]), labels[~held], imagenet_head, pairs, anchor=0.1)
    net = copy.deepcopy(model)
    net.reset_classifier(len(pairs))
    net.get_classifier().load_state_dict(head.state_dict())
    t = time.perf_counter()
    finetune(net, vf.activations, labels, ~held, Hyperparameters(), epochs, [])
    hold = refeaturize(net, vf.activations[np.flatnonzero(held)][:, :2])
    return {**scores(net.get_classifier().eval(), hold, labels[held]), "epochs": epochs,
            "fit_s": round(time.perf_counter() - t, 1)}


if __name__ == "__main__":
    torch.set_num_threads(2)
    np.set_printoptions(precision=4)
    main()
