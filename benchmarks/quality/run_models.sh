#!/usr/bin/env bash
# The fine-tuning runs behind benchmarks/quality/README.md, in order: zero-shot evaluation of the general model,
# then the users' recipe on top of it per domain, each evaluated over that set's best first stage.
# Every step is skipped when its output exists, so re-running resumes (a half-trained model resumes from its
# checkpoints). Needs the indexes of benchmarks/quality/run_first_stages.sh in work/idx-<set>.
#
#   GENERAL=work/general-s2/final bash benchmarks/quality/run_models.sh [step ...]
#
# Steps: zeroshot-scifact zeroshot-checkthat zeroshot-arguana domain-scifact domain-checkthat domain-abt-buy
#        domain-arguana (default: all, in that order); domain-scifact-retuned domain-scifact-n8
#        domain-scifact-n16 (see their comments);
#        domain-mixed (one model on the train splits of scifact, checkthat2020-task2, abt-buy and arguana, each
#        mined with its own best first stage), then
#        mixed-tatqa mixed-financebench mixed-arguana zeroshot-tatqa. Log lines go to stdout; run it under nohup.
# ArguAna (1,294 test queries of two long arguments) and TAT-QA (1,663) are evaluated on their first
# EVAL_QUERIES test queries (default 300) to fit 2 CPU cores; the mixed model trains on the first
# MIXED_QUERIES train queries of each set (default 300). Both are recorded in the reports and cards.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1
DATA=${DATA:-../shared/datasets}
GENERAL=${GENERAL:-work/general-s2/final}
RESULTS=benchmarks/results
WINNOW=${WINNOW:-.venv/bin/winnow}
ZERO_SHOT_WEIGHT=${ZERO_SHOT_WEIGHT:-0.5}  # fixed before any evaluation: equal-weight fusion, not tuned

# best first stage per set (nDCG@10, test; benchmarks/results/first_stages_summary.md)
declare -A BEST=([scifact]=hybrid [checkthat2020-task2]=dense [arguana]=hybrid [abt-buy]=hybrid [tatqa]=bm25
    [financebench]=dense)  # financebench: work/idx-financebench is chunked (winnow index --chunk-words 200)
EVAL_QUERIES=${EVAL_QUERIES:-300}
MIXED_QUERIES=${MIXED_QUERIES:-300}
MIXED=work/domain-mixed
MIXED_SETS=(scifact checkthat2020-task2 abt-buy arguana)

log() { echo "$(date -u +%H:%M:%S) $*"; }

evaluate() {  # set reranker report [extra eval flags]; DEPTH=10 evaluate ... reranks fewer candidates
    local ds=$1 model=$2 out=$3 depth=${DEPTH:-10,20}; shift 3
    [[ -f $out ]] && { log "skip $out"; return; }
    log "evaluate $model on $ds test over ${BEST[$ds]} $*"
    $WINNOW eval --dataset "$DATA/$ds" --split test --first-stage "${BEST[$ds]}" --index "work/idx-$ds" \
        --depth "$depth" --reranker "$model" --out "$out" "$@"
}

zeroshot() {  # set [extra eval flags]
    local ds=$1; shift
    evaluate "$ds" "$GENERAL" "$RESULTS/general_zeroshot_$ds.json" --interpolation-weight "$ZERO_SHOT_WEIGHT" "$@"
}

mixed() {  # train the mixed domain model
    [[ -f $MIXED/winnow.json ]] && { log "skip $MIXED"; return; }
    local args=() ds
    for ds in "${MIXED_SETS[@]}"; do
        args+=(--dataset "$DATA/$ds" --first-stage "${BEST[$ds]}" --index "work/idx-$ds")
    done
    log "fine-tune the mixed model on $GENERAL: ${MIXED_SETS[*]}, $MIXED_QUERIES train queries each"
    $WINNOW finetune "${args[@]}" --out "$MIXED" --base "$GENERAL" --max-queries "$MIXED_QUERIES" \
        --max-length 256 --tune-depth 20 --eval-fraction 0.05 --eval-steps 150 --tune-max-queries 50
}

retune() {  # model set split [max queries]: windows or truncation, and the weight, chosen on dev or held-apart queries
    local model=$1 ds=$2 split=$3 queries=${4:-}
    grep -q '"windows"' "$model/winnow.json" && { log "skip retuning $model (its card has a windows choice)"; return; }
    log "choose windows or truncation and the weight of $model on $ds/$split ${queries:+(first $queries queries)}"
    $WINNOW tune --model "$model" --dataset "$DATA/$ds" --split "$split" \
        --first-stage "${BEST[$ds]}" --index "work/idx-$ds" --depth 20 ${queries:+--max-queries "$queries"}
}

domain() {  # set [extra finetune flags]; DOMAIN_EVAL="flags" domain ... passes extra eval flags;
    # DOMAIN_MODEL and DOMAIN_OUT rename the model folder and the report; RETUNE=dev|heldout (with RETUNE_QUERIES)
    # re-chooses windows or truncation and the weight before the test evaluation
    local ds=$1; shift
    local model=${DOMAIN_MODEL:-work/domain-$ds} out=${DOMAIN_OUT:-$RESULTS/domain_$ds.json}
    if [[ ! -f $model/winnow.json ]]; then
        log "fine-tune $ds on $GENERAL"
        $WINNOW finetune --dataset "$DATA/$ds" --out "$model" --base "$GENERAL" \
            --first-stage "${BEST[$ds]}" --index "work/idx-$ds" --tune-depth 20 "$@"
    fi
    [[ -n ${RETUNE:-} ]] && retune "$model" "$ds" "$RETUNE" "${RETUNE_QUERIES:-}"
    # shellcheck disable=SC2086  # DOMAIN_EVAL is a list of flags
    evaluate "$ds" "$model" "$out" ${DOMAIN_EVAL:-}  # weight from its card
}

steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(zeroshot-scifact zeroshot-checkthat domain-scifact domain-checkthat
    domain-abt-buy zeroshot-arguana domain-arguana)
for step in "${steps[@]}"; do
    case $step in
        zeroshot-scifact) zeroshot scifact ;;
        zeroshot-checkthat) zeroshot checkthat2020-task2 ;;
        zeroshot-arguana) zeroshot arguana --max-queries "$EVAL_QUERIES" ;;
        zeroshot-tatqa) zeroshot tatqa --max-queries "$EVAL_QUERIES" ;;
        domain-mixed) mixed ;;
        mixed-tatqa) evaluate tatqa "$MIXED" "$RESULTS/mixed_zeroshot_tatqa.json" --max-queries "$EVAL_QUERIES" ;;
        mixed-financebench)  # 10-K pages are long (several windows each): top 10 only, to fit 2 cores
            DEPTH=10 evaluate financebench "$MIXED" "$RESULTS/mixed_zeroshot_financebench.json" ;;
        mixed-arguana) evaluate arguana "$MIXED" "$RESULTS/mixed_arguana.json" --max-queries "$EVAL_QUERIES" ;;
        domain-scifact) domain scifact --max-length 256 ;;  # abstracts: ~270 tokens
        domain-scifact-retuned)  # the same model, windows or truncation and weight re-chosen on its held-apart queries
            DOMAIN_OUT=$RESULTS/domain_scifact_retuned.json RETUNE=heldout domain scifact --max-length 256 ;;
        domain-scifact-n8)  # twice the mined negatives per query (8), same held-apart queries, re-chosen the same way
            DOMAIN_MODEL=work/domain-scifact-n8 DOMAIN_OUT=$RESULTS/domain_scifact_n8.json RETUNE=heldout \
                domain scifact --max-length 256 --hard-negatives 8 --eval-steps 150 ;;
        domain-scifact-n16)  # 16 mined negatives; tuned only by the retune (both ways) on the same held-apart queries
            DOMAIN_MODEL=work/domain-scifact-n16 DOMAIN_OUT=$RESULTS/domain_scifact_n16.json RETUNE=heldout \
                domain scifact --max-length 256 --hard-negatives 16 --eval-steps 250 --tune-weight-split none ;;
        domain-checkthat) domain checkthat2020-task2 ;;
        domain-abt-buy) domain abt-buy ;;
        domain-arguana)  # 2,014 train queries of two ~200-word arguments: a small held-apart part, few evaluations,
            # the weight tuned on the first 100 dev queries, the test split's first EVAL_QUERIES
            # (winnow tune then picks truncation over best-window scoring, and the weight, on 100 dev queries);
            # only arguana's test documents have titles (SOURCE.md), so the reranker reads the text alone on test
            DOMAIN_OUT=$RESULTS/domain_arguana_notitles.json RETUNE=dev RETUNE_QUERIES=100 \
                DOMAIN_EVAL="--max-queries $EVAL_QUERIES --no-titles" domain arguana --max-length 256 --eval-fraction 0.03 \
                --eval-steps 200 --tune-max-queries 100 ;;
        *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
log "done: ${steps[*]}"
