#!/usr/bin/env bash
# The GPU measurements of the wav2pos and train-seld issues, each stage sized for one call of at most
# 10 minutes on a lent machine (one GPU, 16 cores). Results (JSON, runs) go to OUT.
#
#   bash benchmarks/gpu_session.sh wav2pos OUT   # wav2pos speed, fine-tune on fresh windows
#   bash benchmarks/gpu_session.sh seld OUT      # logmel+GCC vs logmel+NGCC SELD (Paper VI), bench-adpit
#
# Sizes come from the environment, so that a CPU dry run can shrink them, e.g.
#   DEVICE=cpu WORKERS=2 SPEED_BATCH=2 W2P_SCENES=40 W2P_EPOCHS=1 bash benchmarks/gpu_session.sh wav2pos /tmp/g
#   DEVICE=cpu WORKERS=2 ADPIT_TRACKS=3 SELD_TRAIN=2 SELD_TEST=2 SELD_EPOCHS=1 bash benchmarks/gpu_session.sh seld /tmp/g
set -euo pipefail

stage=${1:?usage: gpu_session.sh wav2pos|seld OUT}
out=${2:?usage: gpu_session.sh wav2pos|seld OUT}
device=${DEVICE:-cuda}
workers=${WORKERS:-15}
mkdir -p "$out"

case $stage in
  wav2pos)
    # Ends by BUDGET_S seconds after its start: training is cut at the deadline (best.pt is kept per
    # epoch); the run's small files are copied to OUT, the Tables 1–2 benchmark then runs on any CPU.
    deadline=$(( $(date +%s) + ${BUDGET_S:-470} ))
    speed_batches=${SPEED_BATCH:-1,16,64,256}  # "none": skip the timing
    [ "$speed_batches" = none ] || python3 benchmarks/wav2pos_speed.py --device "$device" --batch "$speed_batches" --paper-size > "$out/wav2pos_speed.json"
    run=${W2P_RUN:-/tmp/wav2pos-gpu}
    timeout $(( deadline - $(date +%s) - 10 )) python3 -m sslkit train-wav2pos --init "${W2P_INIT:-models/checkpoints/wav2pos.pt}" \
      --scenes "${W2P_SCENES:-40000}" --windows-per-scene 2 --val-scenes 300 --epochs "${W2P_EPOCHS:-40}" --lr "${W2P_LR:-3e-4}" \
      --batch-size 256 --workers "$workers" --device "$device" --seed "${W2P_SEED:-4}" --out "$run" || echo "train-wav2pos stopped: $?"
    mkdir -p "$out/wav2pos"
    cp "$run"/{best.pt,metrics.csv,config.yaml,learning_curve.png} "$out/wav2pos/" || true
    ;;
  seld)
    python3 -m sslkit bench-adpit --tracks "${ADPIT_TRACKS:-3,5,6}" --device "$device" --out "$out/bench_adpit.json"
    python3 -m sslkit simulate --preset tetra-seld --count "${SELD_TRAIN:-40}" --workers "$workers" --seed 0 --out "$out/seld-train"
    python3 -m sslkit simulate --preset tetra-seld-test --count "${SELD_TEST:-10}" --workers "$workers" --seed 1 --out "$out/seld-test"
    python3 benchmarks/seld_features.py --train "$out/seld-train" --test "$out/seld-test" --epochs "${SELD_EPOCHS:-100}" --lr 2e-3 \
      --device "$device" --out "$out/seld-compare" > "$out/seld_features.json"
    ;;
  *)
    echo "gpu_session.sh: unknown stage '$stage' (wav2pos or seld)" >&2
    exit 2
    ;;
esac
