#!/usr/bin/env bash
# The main job: data -> [base] -> SFT (plain, PAG) -> RL (MT-GRPO, PAG-RL) -> eval -> the comparison table.
# The base stage (next-token loss on every token of generated conversations) runs when the preset's
# base section has max_steps > 0 (gpu: yes; cpu: no, see the README); both SFT runs then start from it.
#
#   bash run.sh              # preset gpu with CUDA, else cpu
#   PRESET=micro bash run.sh # seconds-scale smoke run
#   bash run.sh --full       # + the ablations: PAG-SFT + MT-GRPO, SFT + pag-rl (history policy)
#   PRESET=gpu MAX_STEPS=2 MAX_TASKS=8 MAX_TOKENS=32 bash run.sh   # smoke: every stage, tiny counts
#   SEEDS=3 bash run.sh      # every RL row trained with seeds 1..3 (rows <run>_s1..3; the table adds
#                            # mean +- std per row); default: one run per row, seed 1337
#   THREADS=1 bash run.sh    # torch threads per stage (default: one per core idle when the stage
#                            # starts; waiting threads on shared cores are slower than one)
#   PYTHON=.venv/bin/python bash run.sh   # the interpreter (default: the active venv's python, else python3)
#
# MAX_STEPS caps every training stage; MAX_TASKS caps every data split, the SFT batch and val
# samples, the RL tasks per step and val tasks (with groups of 2 rollouts), and the test tasks
# evaluated; MAX_TOKENS caps the tokens of one assistant step in RL and eval (an untrained model
# never stops on its own). Real model shapes, real data format, real rollouts: what a first GPU
# run would hit, in minutes on a CPU.
#
# Every stage writes into out/<preset>/ and is skipped when its DONE marker exists; a killed stage
# resumes from its last checkpoint (--resume). Ctrl-C saves a checkpoint at the end of the current
# training step and stops; run the same command again to go on. Delete out/<preset>/ to start over.
set -euo pipefail
cd "$(dirname "$0")"

FULL=0
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    *) echo "error: unknown argument: $arg (only --full)" >&2; exit 2 ;;
  esac
done
if ! [[ "${SEEDS:-1}" =~ ^[1-9][0-9]*$ ]]; then echo "error: SEEDS=$SEEDS must be a positive integer" >&2; exit 2; fi
# every `python` below is $PYTHON: the active venv's interpreter, else python3 (not whatever `python`
# PATH holds first), so that run.sh works without activating a venv
if [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON=${PYTHON:-$VIRTUAL_ENV/bin/python}; else PYTHON=${PYTHON:-python3}; fi
python() { "$PYTHON" "$@"; }
python -c "import torch, nanoparl" 2>/dev/null || { echo "error: PYTHON=$PYTHON cannot import torch and nanoparl:" \
  "activate the venv that has requirements.txt, or set PYTHON to its bin/python" >&2; exit 1; }
PRESET=${PRESET:-$(python -c "from nanoparl.common import default_preset; print(default_preset())")}
python -c "import sys; from nanoparl.common import PRESETS; sys.exit(0 if '$PRESET' in PRESETS else
  f'error: unknown PRESET=$PRESET; choose one of {sorted(PRESETS)}')"
THREADS_FLAG=(); if [ -n "${THREADS:-}" ]; then THREADS_FLAG=(--threads "$THREADS"); fi
SMOKE=""; if [ -n "${MAX_STEPS:-}${MAX_TASKS:-}${MAX_TOKENS:-}" ]; then SMOKE="-smoke"; fi  # capped runs: folders of their own
DATA=${DATA:-data/$PRESET$SMOKE}
OUT=${OUT:-out/$PRESET$SMOKE}
mkdir -p "$OUT"
DATA_CAP=(); SFT_CAP=(); RL_CAP=(); EVAL_CAP=()
if [ -n "${MAX_STEPS:-}" ]; then SFT_CAP+=(--max-steps "$MAX_STEPS"); RL_CAP+=(--max-steps "$MAX_STEPS"); fi
if [ -n "${MAX_TASKS:-}" ]; then
  DATA_CAP=(--max-tasks "$MAX_TASKS"); SFT_CAP+=(--batch-size "$MAX_TASKS" --eval-samples "$MAX_TASKS")
  RL_CAP+=(--tasks-per-step "$MAX_TASKS" --group-size 2 --eval-tasks "$MAX_TASKS"); EVAL_CAP=(--max-tasks "$MAX_TASKS")
fi
if [ -n "${MAX_TOKENS:-}" ]; then RL_CAP+=(--step-tokens "$MAX_TOKENS"); EVAL_CAP+=(--step-tokens "$MAX_TOKENS"); fi
START=$(date +%s)

stage() {  # stage NAME COMMAND...: run unless done, time it, mark it done
  local name=$1; shift
  if [ -f "$OUT/$name.DONE" ]; then echo "== $name: done already (rm $OUT/$name.DONE to redo)"; return; fi
  echo "== $name: $*"
  local t0=$(date +%s)
  "$@" 2>&1 | (trap '' INT; tee "$OUT/$name.log")  # tee outlives Ctrl-C: the stage prints where it saved
  echo "$(( $(date +%s) - t0 ))" > "$OUT/$name.DONE"
  echo "== $name: $(cat "$OUT/$name.DONE")s"
}

stage data      python data_gen.py --preset "$PRESET" --out "$DATA" --overwrite "${DATA_CAP[@]}" "${THREADS_FLAG[@]}"
INIT=()
if [ "$(python -c "from nanoparl.common import get_preset; print(get_preset('$PRESET')['base']['max_steps'])")" -gt 0 ]; then
  stage base    python train_sft.py --preset "$PRESET" --data base --data-dir "$DATA" --out "$OUT/base" --resume "${SFT_CAP[@]}" \
                  "${THREADS_FLAG[@]}"
  INIT=(--init "$OUT/base")
fi
stage sft_plain python train_sft.py --preset "$PRESET" --data plain --data-dir "$DATA" --out "$OUT/sft_plain" \
                  --resume "${INIT[@]}" "${SFT_CAP[@]}" "${THREADS_FLAG[@]}"
stage sft_pag   python train_sft.py --preset "$PRESET" --data pag --data-dir "$DATA" --out "$OUT/sft_pag" \
                  --resume "${INIT[@]}" "${SFT_CAP[@]}" "${THREADS_FLAG[@]}"
RUNS=("$OUT/sft_plain" "$OUT/sft_pag")
rl() {  # rl NAME INIT ARGS...: one RL row, or one per seed (NAME_s1, NAME_s2, ...) with SEEDS > 1
  local name=$1 init=$2 seeds=("") s run; shift 2
  if [ "${SEEDS:-1}" != 1 ]; then seeds=($(seq 1 "$SEEDS")); fi
  for s in "${seeds[@]}"; do
    run=$name${s:+_s$s}
    stage "$run" python train_rl.py --preset "$PRESET" --init "$OUT/$init" --data-dir "$DATA" --out "$OUT/$run" \
                  ${s:+--seed "$s"} --resume "$@" "${RL_CAP[@]}" "${THREADS_FLAG[@]}"
    RUNS+=("$OUT/$run")
  done
}
rl mt_grpo sft_plain --algo mt-grpo
rl parl_mt sft_pag --algo pag-rl
if [ "$FULL" = 1 ]; then
  rl pag_mt_grpo sft_pag --algo mt-grpo
  rl no_awareness sft_plain --algo pag-rl --policy history
fi

# the tables: the oracle (the ceiling) and every run on the headline test split (in-domain), then
# the first 100 tasks of the unseen-words split and of val; the last table puts the three side by side
python eval.py --preset "$PRESET" --agent oracle --ckpt "${RUNS[@]}" --data-dir "$DATA" --split test --show 1 \
  "${EVAL_CAP[@]}" "${THREADS_FLAG[@]}" --out "$OUT/results.json" | tee "$OUT/eval.log"
for split in unseen val; do
  python eval.py --preset "$PRESET" --ckpt "${RUNS[@]}" --data-dir "$DATA" --split $split --max-tasks 100 \
    "${EVAL_CAP[@]}" "${THREADS_FLAG[@]}" --out "$OUT/results_$split.json" | tee "$OUT/eval_$split.log"
done
python - "$OUT" <<'PY' || true
import sys
from nanoparl.plot import plot_runs
plot_runs(sys.argv[1])
PY
python -m nanoparl.report "$OUT" | tee "$OUT/report.txt"
echo "== total wall time: $(( $(date +%s) - START ))s (preset $PRESET; stages marked DONE earlier not re-run)"
