"""Install a trained general reranker as winnow's shipped default (``rerank/models/winnow-general``).

Copies the fp16 folder ``train_general.py --fp16`` wrote, records in its card the interpolation weight the
ranker uses by default (a general model has no domain dev split to tune one on, so the weight is a stated
prior), and refuses a folder over the 50 MB package-data limit or with non-fp16 weights. Commit the result
only when the new model measurably beats the shipped one (benchmarks/quality/README.md: how it was measured).

    python benchmarks/quality/ship_general.py work/general-s2/final-fp16 --weight 0.5
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "rerank" / "models" / "winnow-general"
MAX_BYTES = 50 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="fp16 model folder (OUT/final-fp16 of train_general.py)")
    parser.add_argument("--weight", type=float, required=True, help="default interpolation weight, in (0, 1]")
    parser.add_argument(
        "--weight-source",
        default="fixed prior (equal-weight fusion) chosen before any evaluation, not tuned on any test split",
    )
    args = parser.parse_args()
    if not 0.0 < args.weight <= 1.0:
        parser.error("--weight must be in (0, 1]")
    from winnow.rerank.card import read_card, save_card

    card = read_card(args.source)
    if card is None:
        parser.error(f"{args.source} has no winnow.json: not a folder written by winnow's training")
    size = sum(f.stat().st_size for f in args.source.iterdir() if f.is_file())
    if size > MAX_BYTES:
        parser.error(f"{args.source} holds {size / 2**20:.1f} MiB; package data is limited to 50 MiB")
    from safetensors import safe_open

    for shard in sorted(args.source.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            names = f.keys()
            dtypes = {str(f.get_slice(name).get_dtype()) for name in names}
        if dtypes != {"F16"}:
            parser.error(f"{shard.name} holds {sorted(dtypes)} tensors; ship the fp16 copy")

    if TARGET.exists():
        shutil.rmtree(TARGET)
    shutil.copytree(args.source, TARGET, ignore=shutil.ignore_patterns("checkpoints", "*.tmp"))
    card["interpolation"] = {"weight": args.weight, "source": args.weight_source, "split": None}
    save_card(TARGET, card)
    mib = size / 2**20
    print(f"installed {args.source} -> {TARGET.relative_to(ROOT)} ({mib:.1f} MiB, weight {args.weight})")


if __name__ == "__main__":
    main()
