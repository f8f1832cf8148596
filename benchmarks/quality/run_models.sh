#!/usr/bin/env bash
# The fine-tuning runs behind benchmarks/quality/README.md, in order: zero-shot evaluation of the general model,
# then the users' recipe on top of it per domain, each evaluated over that set's best first stage.
# Every step is skipped when its output exists, so re-running resumes (a half-trained model resumes from its
# checkpoints). Needs the indexes of benchmarks/quality/run_first_stages.sh in work/idx-<set>.
#
#   GENERAL=work/general-s2/final bash benchmarks/quality/run_models.sh [step ...]
#
# Steps: zeroshot-scifact zeroshot-checkthat zeroshot-arguana domain-scifact domain-checkthat domain-abt-buy
#        domain-arguana (default: all, in that order). Log lines go to stdout; run it under nohup.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1
DATA=${DATA:-../shared/datasets}
GENERAL=${GENERAL:-work/general-s2/final}
RESULTS=benchmarks/results
WINNOW=${WINNOW:-.venv/bin/winnow}
ZERO_SHOT_WEIGHT=${ZERO_SHOT_WEIGHT:-0.5}  # fixed before any evaluation: equal-weight fusion, not tuned

# best first stage per set (nDCG@10, test; benchmarks/results/first_stages_summary.md)
declare -A BEST=([scifact]=hybrid [checkthat2020-task2]=dense [arguana]=hybrid [abt-buy]=hybrid)

log() { echo "$(date -u +%H:%M:%S) $*"; }

zeroshot() {  # set
    local ds=$1 out=$RESULTS/general_zeroshot_$1.json
    [[ -f $out ]] && { log "skip $out"; return; }
    log "zero-shot $ds over ${BEST[$ds]}"
    $WINNOW eval --dataset "$DATA/$ds" --split test --first-stage "${BEST[$ds]}" --index "work/idx-$ds" \
        --depth 10,20 --reranker "$GENERAL" --interpolation-weight "$ZERO_SHOT_WEIGHT" --out "$out"
}

domain() {  # set [extra finetune flags]
    local ds=$1; shift
    local model=work/domain-$ds out=$RESULTS/domain_$ds.json
    if [[ ! -f $model/winnow.json ]]; then
        log "fine-tune $ds on $GENERAL"
        $WINNOW finetune --dataset "$DATA/$ds" --out "$model" --base "$GENERAL" \
            --first-stage "${BEST[$ds]}" --index "work/idx-$ds" --tune-depth 20 "$@"
    fi
    [[ -f $out ]] && { log "skip $out"; return; }
    log "evaluate $model on $ds test over ${BEST[$ds]} (weight from its card)"
    $WINNOW eval --dataset "$DATA/$ds" --split test --first-stage "${BEST[$ds]}" --index "work/idx-$ds" \
        --depth 10,20 --reranker "$model" --out "$out"
}

steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(zeroshot-scifact zeroshot-checkthat domain-scifact domain-checkthat
    domain-abt-buy zeroshot-arguana domain-arguana)
for step in "${steps[@]}"; do
    case $step in
        zeroshot-scifact) zeroshot scifact ;;
        zeroshot-checkthat) zeroshot checkthat2020-task2 ;;
        zeroshot-arguana) zeroshot arguana ;;
        domain-scifact) domain scifact --max-length 256 ;;  # abstracts: ~270 tokens
        domain-checkthat) domain checkthat2020-task2 ;;
        domain-abt-buy) domain abt-buy ;;
        domain-arguana) domain arguana ;;
        *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
log "done: ${steps[*]}"
