#!/usr/bin/env bash
# The GPU measurements of the wav2pos and train-seld issues, each stage sized for one call of at most
# 10 minutes on a lent machine (one GPU, 16 cores). Results (JSON, runs) go to OUT.
#
#   bash benchmarks/gpu_session.sh wav2pos OUT   # wav2pos speed, fine-tune on fresh windows, Tables 1–2
#   bash benchmarks/gpu_session.sh seld OUT      # logmel+GCC vs logmel+NGCC SELD (Paper VI), bench-adpit
#
# Sizes come from the environment, so that a CPU dry run can shrink them, e.g.
#   DEVICE=cpu WORKERS=2 SPEED_BATCH=16 W2P_SCENES=40 W2P_EPOCHS=1 LUVIRA_RECORDINGS=1 bash benchmarks/gpu_session.sh wav2pos /tmp/g
#   DEVICE=cpu WORKERS=2 ADPIT_TRACKS=3 SELD_TRAIN=2 SELD_TEST=2 SELD_EPOCHS=1 bash benchmarks/gpu_session.sh seld /tmp/g
set -euo pipefail

stage=${1:?usage: gpu_session.sh wav2pos|seld OUT}
out=${2:?usage: gpu_session.sh wav2pos|seld OUT}
device=${DEVICE:-cuda}
workers=${WORKERS:-16}
mkdir -p "$out"

case $stage in
  wav2pos)
    python benchmarks/wav2pos_speed.py --device "$device" --batch "${SPEED_BATCH:-64}" > "$out/wav2pos_speed.json"
    sslkit train-wav2pos --init models/checkpoints/wav2pos.pt --scenes "${W2P_SCENES:-40000}" --val-scenes 300 \
      --epochs "${W2P_EPOCHS:-20}" --lr 2e-4 --batch-size 256 --workers "$workers" --device "$device" --seed 4 --out "$out/wav2pos"
    python benchmarks/wav2pos_speed.py --device "$device" --batch "${SPEED_BATCH:-64}" --checkpoint "$out/wav2pos/best.pt" > "$out/wav2pos_speed_new.json"
    python benchmarks/luvira_locate.py --recordings "${LUVIRA_RECORDINGS:-10}" --no-srp --ngcc models/checkpoints/ngcc-phat-luvira.pt \
      --wav2pos "$out/wav2pos/best.pt" --device "$device" > "$out/luvira_locate.json"
    ;;
  seld)
    sslkit bench-adpit --tracks "${ADPIT_TRACKS:-3,5,6}" --device "$device" --out "$out/bench_adpit.json"
    sslkit simulate --preset tetra-seld --count "${SELD_TRAIN:-40}" --workers "$workers" --seed 0 --out "$out/seld-train"
    sslkit simulate --preset tetra-seld-test --count "${SELD_TEST:-10}" --workers "$workers" --seed 1 --out "$out/seld-test"
    python benchmarks/seld_features.py --train "$out/seld-train" --test "$out/seld-test" --epochs "${SELD_EPOCHS:-100}" --lr 2e-3 \
      --device "$device" --out "$out/seld-compare" > "$out/seld_features.json"
    ;;
  *)
    echo "gpu_session.sh: unknown stage '$stage' (wav2pos or seld)" >&2
    exit 2
    ;;
esac
