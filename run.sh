#!/usr/bin/env bash
# The main job: data -> [base] -> SFT (plain, PAG) -> RL (MT-GRPO, PAG-RL) -> eval -> the comparison table.
# The base stage (next-token loss on every token of generated conversations) runs when the preset's
# base section has max_steps > 0 (gpu: yes; cpu: no, see the README); both SFT runs then start from it.
#
#   bash run.sh              # preset gpu with CUDA, else cpu
#   PRESET=micro bash run.sh # seconds-scale smoke run
#   bash run.sh --full       # + the ablations: PAG-SFT + MT-GRPO, SFT + pag-rl (history policy)
#
# Every stage writes into out/<preset>/ and is skipped when its DONE marker exists; a killed stage
# resumes from its last checkpoint (--resume). Delete out/<preset>/ to start over.
set -euo pipefail
cd "$(dirname "$0")"

FULL=0
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    *) echo "unknown argument: $arg (only --full)"; exit 2 ;;
  esac
done
PRESET=${PRESET:-$(python -c "from nanoparl.common import default_preset; print(default_preset())")}
DATA=${DATA:-data/$PRESET}
OUT=${OUT:-out/$PRESET}
mkdir -p "$OUT"
START=$(date +%s)

stage() {  # stage NAME COMMAND...: run unless done, time it, mark it done
  local name=$1; shift
  if [ -f "$OUT/$name.DONE" ]; then echo "== $name: done already (rm $OUT/$name.DONE to redo)"; return; fi
  echo "== $name: $*"
  local t0=$(date +%s)
  "$@" 2>&1 | tee "$OUT/$name.log"
  echo "$(( $(date +%s) - t0 ))" > "$OUT/$name.DONE"
  echo "== $name: $(cat "$OUT/$name.DONE")s"
}

stage data      python data_gen.py --preset "$PRESET" --out "$DATA"
INIT=()
if [ "$(python -c "from nanoparl.common import get_preset; print(get_preset('$PRESET')['base']['max_steps'])")" -gt 0 ]; then
  stage base    python train_sft.py --preset "$PRESET" --data base --data-dir "$DATA" --out "$OUT/base" --resume
  INIT=(--init "$OUT/base")
fi
stage sft_plain python train_sft.py --preset "$PRESET" --data plain --data-dir "$DATA" --out "$OUT/sft_plain" \
                  --resume "${INIT[@]}"
stage sft_pag   python train_sft.py --preset "$PRESET" --data pag --data-dir "$DATA" --out "$OUT/sft_pag" \
                  --resume "${INIT[@]}"
stage mt_grpo   python train_rl.py --preset "$PRESET" --algo mt-grpo --init "$OUT/sft_plain" --data-dir "$DATA" \
                  --out "$OUT/mt_grpo" --resume
stage parl_mt   python train_rl.py --preset "$PRESET" --algo pag-rl --init "$OUT/sft_pag" --data-dir "$DATA" \
                  --out "$OUT/parl_mt" --resume
RUNS=("$OUT/sft_plain" "$OUT/sft_pag" "$OUT/mt_grpo" "$OUT/parl_mt")
if [ "$FULL" = 1 ]; then
  stage pag_mt_grpo python train_rl.py --preset "$PRESET" --algo mt-grpo --init "$OUT/sft_pag" --data-dir "$DATA" \
                      --out "$OUT/pag_mt_grpo" --resume
  stage no_awareness python train_rl.py --preset "$PRESET" --algo pag-rl --policy history --init "$OUT/sft_plain" \
                      --data-dir "$DATA" --out "$OUT/no_awareness" --resume
  RUNS+=("$OUT/pag_mt_grpo" "$OUT/no_awareness")
fi

# the table: oracle (the ceiling) and every run, on the held-out test split
python eval.py --preset "$PRESET" --agent oracle --data-dir "$DATA" --out "$OUT/eval_oracle.json" \
  | tee "$OUT/eval_oracle.log"
python eval.py --preset "$PRESET" --ckpt "${RUNS[@]}" --data-dir "$DATA" --split test --show 1 \
  --out "$OUT/results.json" | tee "$OUT/eval.log"
python - "$OUT" <<'PY' || true
import sys
from nanoparl.plot import plot_runs
plot_runs(sys.argv[1])
PY
echo "== total wall time: $(( $(date +%s) - START ))s (preset $PRESET; stages marked DONE earlier not re-run)"
