#!/usr/bin/env bash
# Build .gpu-kit/: what a bare GPU machine of the device tool lacks for `make gpu-train`, split into parts small
# enough to carry (the working tree and the carried paths travel together, 64 MiB a call, and the tracked tree
# is about 48 MiB, so each part is at most PART_MB, default 13 MiB):
#   - wheels for the machine's Python 3.12 that its image does not hold (bm25s, PyStemmer, faiss-cpu,
#     ir-measures, pytrec-eval-terrier, datasets, dill, multiprocess; the versions of this .venv);
#   - the packaged all-MiniLM-L6-v2 as an fp16 sentence-transformers folder (bi-encoder and training base);
#   - the shared datasets the command reads (SQuAD v1.1, QED-NQ train pairs, the six test sets), xz-compressed.
# Needs pip to reach a package index for the wheels (or WHEELS=dir of them). Not yet used on a device machine:
# benchmarks/quality/README.md, "The general stage on a GPU", says how the parts are sent and unpacked.
#
#   bash benchmarks/quality/gpu_kit.sh          # -> .gpu-kit/part.00 .. part.NN
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/datasets}
PYTHON=${PYTHON:-.venv/bin/python}
PART_MB=${PART_MB:-13}
KIT=.gpu-kit
BUILD=$KIT/build
SETS=(scifact checkthat2020-task2 arguana abt-buy tatqa financebench)
PACKAGES=(bm25s==0.3.16 PyStemmer==3.1.0 faiss-cpu==1.15.1 ir-measures==0.4.3 pytrec-eval-terrier==0.5.11
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)

rm -rf "$KIT" && mkdir -p "$BUILD/wheels" "$BUILD/minilm"
if [[ -n ${WHEELS:-} ]]; then
    cp "$WHEELS"/*.whl "$BUILD/wheels/"
else
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d "$BUILD/wheels" "${PACKAGES[@]}"
fi

"$PYTHON" - "$BUILD/minilm" <<'EOF'
import json, shutil, sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from winnow.retrieval.embedder import packaged_minilm_path

source, target = Path(packaged_minilm_path()), Path(sys.argv[1])
shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.half().contiguous() for k, v in weights.items()}, str(target / "model.safetensors"))
# stored in fp16, computed in fp32 (transformers would otherwise load fp16 weights as fp16: no training base)
config = json.loads((target / "config.json").read_text())
config["dtype"] = "float32"
(target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
EOF

tar -C "$DATA" -cf - squad-v1.1/corpus.jsonl squad-v1.1/queries.jsonl squad-v1.1/qrels/train.tsv \
    qed-nq/pairs/train.jsonl "${SETS[@]}" | xz -T0 -6 >"$BUILD/datasets.tar.xz"
tar -C "$BUILD" -cf - wheels minilm datasets.tar.xz | split -b "${PART_MB}M" -d - "$KIT/part."
rm -rf "$BUILD"
ls -l "$KIT"
echo "$(ls "$KIT" | wc -l) parts of at most $PART_MB MiB in $KIT"
