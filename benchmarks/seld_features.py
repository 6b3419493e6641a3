"""Paper VI Table 1 in small: the same SELDnet trained with logmel+GCC-PHAT and with
logmel+NGCC-PHAT features (same seed, data, loss and schedule), scored on held-out scenes;
``--distance-weights none,reciprocal`` also compares the plain distance loss with Paper VI's
1/distance weighting.

Train on `tetra-seld` scenes and validate on `tetra-seld-test` scenes (held-out signals, other
rooms), e.g.

    sslkit simulate --preset tetra-seld --count 40 --out seld-train --seed 0
    sslkit simulate --preset tetra-seld-test --count 10 --out seld-test --seed 1
    python benchmarks/seld_features.py --train seld-train --test seld-test --epochs 12 --out runs/seld-compare

Prints JSON: per feature set the test metrics after the last epoch (F_LD, DOAE, RDE), the best
epoch's, and the training time.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from sslkit.allocator import keep_freed_memory
from sslkit.files import read_csv_columns
from sslkit.models.train_seld import DEFAULT_CLASSES, SeldTrainConfig, seld_data_folders, train_seld

keep_freed_memory()  # as the CLI does: 2x faster NGCC-PHAT on glibc
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--train", type=Path, required=True)
parser.add_argument("--test", type=Path, required=True)
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--no-channel-swap", action="store_true", help="train without channel-swap augmentation")
parser.add_argument("--threads", type=int, default=None, help="torch threads (run the feature sets side by side with 1 each)")
parser.add_argument("--distance-unit", type=float, default=4.0, help="metres per distance unit in the loss")
parser.add_argument("--filters", type=int, default=64)
parser.add_argument("--rnn-size", type=int, default=128)
parser.add_argument("--features", default="logmel+gcc,logmel+ngcc")
parser.add_argument("--distance-weights", default="none", help="comma-separated: none, reciprocal")
parser.add_argument("--ngcc", default=None, help="multi-target NGCC-PHAT (default: the shipped tetrahedral one)")
parser.add_argument("--device", default="cpu")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", type=Path, default=Path("runs/seld-compare"))
args = parser.parse_args()


if args.threads:
    torch.set_num_threads(args.threads)
train_folders, test_folders = seld_data_folders(args.train), seld_data_folders(args.test)
results = {}
for features, weight in itertools.product(args.features.split(","), args.distance_weights.split(",")):
    cfg = SeldTrainConfig(train_folders, test_folders, list(DEFAULT_CLASSES), features, "bradpit", args.epochs,
                          args.batch_size, lr=args.lr, filters=args.filters, rnn_size=args.rnn_size, channel_swap=not args.no_channel_swap,
                          distance_unit=args.distance_unit, distance_weight=weight, ngcc=args.ngcc, device=args.device, seed=args.seed)
    name = features if weight == "none" else f"{features} distance-weight {weight}"
    run = args.out / name.replace("+", "-").replace(" ", "-")
    start = time.perf_counter()
    last = train_seld(cfg, run)
    rows = read_csv_columns(run / "metrics.csv", ("epoch", "f_ld", "doae_deg", "rde"))
    best = int(rows["f_ld"].argmax())
    results[name] = {
        "last_epoch": {k: last[k] for k in ("epoch", "f_ld", "doae_deg", "rde")},
        "best_epoch": {k: float(rows[k][best]) for k in ("epoch", "f_ld", "doae_deg", "rde")},
        "train_seconds": time.perf_counter() - start,
    }
print(json.dumps({"train_scenes": len(train_folders), "test_scenes": len(test_folders), "epochs": args.epochs,
                  "batch_size": args.batch_size, "lr": args.lr, "distance_unit": args.distance_unit, "channel_swap": not args.no_channel_swap, "device": args.device, "results": results}, indent=2))
