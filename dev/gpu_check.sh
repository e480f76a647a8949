#!/usr/bin/env bash
# First contact with a GPU: environment, the gpu-preset smoke run (every stage, tiny counts),
# bench.py on the gpu preset, and the test suite. Logs go to $OUT (or ./gpu_logs).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${OUT:-gpu_logs}; mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
if ! command -v python >/dev/null; then mkdir -p /tmp/pybin; ln -sf "$(command -v python3)" /tmp/pybin/python; export PATH=/tmp/pybin:$PATH; fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; free -g | head -2
  python -c "import torch, tokenizers, safetensors, tqdm, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } 2>&1 | tee "$LOGS/env.log"
for part in "${@:-smoke bench tests}"; do
  for p in $part; do
    case $p in
      smoke) (unset OUT; rm -rf data/gpu-smoke out/gpu-smoke
             /usr/bin/time -v env PRESET=gpu MAX_STEPS=2 MAX_TASKS=8 MAX_TOKENS=32 bash run.sh) > "$LOGS/smoke.log" 2>&1
             echo "smoke rc=$?"; grep -E "^== |Maximum resident|Elapsed" "$LOGS/smoke.log" ;;
      bench) python bench.py --preset gpu > "$LOGS/bench.log" 2>&1; echo "bench rc=$?"; cat "$LOGS/bench.log" ;;
      failed) python -m pytest -q -p no:cacheprovider tests/test_sft.py tests/test_train_rl.py 2>&1 | tail -3
              python -m torch.distributed.run --nproc_per_node=2 train_sft.py --preset micro --data plain \
                --data-dir data/gpu-smoke --out /tmp/ddp1 --max-steps 1 2>&1 | grep "error:" | head -2 ;;
      real)  D=/tmp/gpu-real; rm -rf $D /tmp/gpu-real-out  # a slice of the gpu preset's data, real shapes
             python data_gen.py --preset gpu --n-train 1000 --n-val 100 --n-test 100 --n-base 1000 --out $D > "$LOGS/real_data.log" 2>&1
             echo "data rc=$?"; tail -2 "$LOGS/real_data.log"
             timeout 170 python train_sft.py --preset gpu --data pag --data-dir $D --out /tmp/gpu-real-out/sft_pag \
               --max-steps 40 --eval-every 20 --eval-samples 100 --save-every 40 --log-every 10 > "$LOGS/real_sft.log" 2>&1
             echo "sft rc=$?"; cat "$LOGS/real_sft.log"
             timeout 240 python train_rl.py --preset gpu --algo pag-rl --init /tmp/gpu-real-out/sft_pag --data-dir $D \
               --out /tmp/gpu-real-out/parl_mt --max-steps 2 --eval-every 1000 --eval-tasks 8 --save-every 1000 > "$LOGS/real_rl.log" 2>&1
             echo "rl rc=$?"; cat "$LOGS/real_rl.log" ;;
      tests) python -m pytest -q -x -p no:cacheprovider tests > "$LOGS/tests.log" 2>&1; echo "tests rc=$?"; tail -15 "$LOGS/tests.log" ;;
    esac
  done
done
