#!/usr/bin/env bash
# The one prepared GPU check of issue 25 (speed on the accelerator). It runs ON the GPU machine, from the repository root:
#
#   here:    bash tools/gpu_prepare.sh                 # .gpu/: CIFAR-10 (20 MB) and the wheels the GPU image lacks (21 MB)
#   device:  run(command="bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=600)
#   again:   run(command="SKIP_BENCH=1 bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=600) at once: the warm machine
#            keeps data/cache and reports/runs, so the sweep resumes (a fresh machine starts it over)
#
# Within BUDGET_S seconds (default 540, under the tool's 600 s per call) it:
#   1. installs the carried wheels into the image's python3 and unpacks CIFAR-10 at ../shared/data/cifar10 (the profile's root);
#   2. runs tools/bench_gpu.py at full size (the `gpu` preset) twice: as shipped, and with --compile --channels-last;
#   3. runs `dmkd_sweep sweeps/cifar10_gpu.yaml` (teacher; DDPM; s in {1,2,4} x T in {25,100} stores and students; 3 seeds)
#      until the budget is spent (it resumes on the next call), then builds the report's tables from whatever records exist;
#   4. leaves in $OUT: bench_default.json, bench_fast.json, check.log, timings.json, records.tar.gz (reports/runs/cifar10_gpu,
#      reports/tables, reports/figures), nvidia_smi.txt. Unpack records.tar.gz at the repository root here.
set -uo pipefail
T0=$(date +%s); BUDGET_S=${BUDGET_S:-540}
OUT=${OUT:-$PWD/reports/gpu/out}; mkdir -p "$OUT"
PY=${PY:-python3}            # BENCH_ARGS (default --preset gpu) and BUDGET_S can be set for a smoke test on a CPU
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD HF_HUB_OFFLINE=1 DMKD_CACHE=${DMKD_CACHE:-$PWD/data/cache} MPLBACKEND=Agg
now() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET_S - $(now) )); }
cap() { local l; l=$(left); if [ "$l" -lt "$1" ]; then echo $(( l > 1 ? l : 1 )); else echo "$1"; fi; }   # seconds: min(left, $1), at least 1
log() { echo "[gpu_check +$(now)s] $*" | tee -a "$OUT/check.log"; }
declare -A T
mark() { T[$1]=$(now); }

log "start; budget ${BUDGET_S}s; $(git rev-parse --short HEAD 2>/dev/null || echo no-git)"
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1 || log "nvidia-smi failed"

# 1. packages and data
if ! $PY -c 'import diffusers, fastcore, papermill, ipykernel' 2>/dev/null; then
  $PY -m pip install --quiet --no-index --find-links .gpu/wheels diffusers fastcore papermill ipykernel nbclient nbformat >>"$OUT/check.log" 2>&1 \
    || { log "pip install from .gpu/wheels failed (run tools/gpu_prepare.sh here and carry .gpu)"; exit 1; }
fi
$PY -c 'import torch, diffusers, dmkd; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "diffusers", diffusers.__version__, "dmkd", dmkd.__file__)' 2>&1 | tee -a "$OUT/check.log"
if [ ! -d ../shared/data/cifar10/train ]; then
  mkdir -p ../shared/data && tar -xzf .gpu/data/cifar10.tar.gz -C ../shared/data || { log "no .gpu/data/cifar10.tar.gz to unpack"; exit 1; }
fi
mark setup; log "set up"

# 2. the benchmark of ceilings, as shipped and with the compile + channels-last fast paths
[ -n "${SKIP_BENCH:-}" ] || [ -f "$OUT/bench_default.json" ] || timeout -k 10 "$(cap 150)" \
  $PY tools/bench_gpu.py ${BENCH_ARGS:---preset gpu} --out "$OUT/bench_default.json" >>"$OUT/check.log" 2>&1 || log "bench (default) failed or timed out"
mark bench_default; log "bench default done"
[ -n "${SKIP_BENCH:-}" ] || [ -f "$OUT/bench_fast.json" ] || timeout -k 10 "$(cap 200)" \
  $PY tools/bench_gpu.py ${BENCH_ARGS:---preset gpu} --compile --channels-last --out "$OUT/bench_fast.json" >>"$OUT/check.log" 2>&1 || log "bench (fast) failed or timed out"
mark bench_fast; log "bench fast done"

# 3. the CIFAR-10 GPU sweep profile, resumable, until the budget is spent (60 s kept for the report and packing)
SWEEP_S=$(( $(left) - 60 ))
if [ "$SWEEP_S" -gt 30 ]; then
  log "sweep for at most ${SWEEP_S}s"
  timeout -k 15 "$SWEEP_S" $PY -c 'from dmkd.sweeps import sweep_main; sweep_main()' sweeps/cifar10_gpu.yaml >>"$OUT/check.log" 2>&1
  rc=$?; log "sweep ended with rc=$rc (124: stopped by the time guard; a rerun resumes)"
  if [ "$rc" -ne 0 ] && [ "$(left)" -gt 20 ]; then     # the sweep builds the report only when it finishes: build it from what exists
    timeout -k 5 $(( $(left) - 10 )) $PY -m papermill nbs/report.ipynb "$OUT/report_run.ipynb" -p sweep cifar10_gpu -p min_seeds 1 \
      >>"$OUT/check.log" 2>&1 || log "report notebook failed or timed out"
    rm -f "$OUT/report_run.ipynb"
  fi
fi
mark sweep

# 4. bring back the records and the timings
tar -czf "$OUT/records.tar.gz" $(ls -d reports/runs/cifar10_gpu reports/tables reports/figures 2>/dev/null) 2>>"$OUT/check.log"
mark pack
{ echo "{"; for k in setup bench_default bench_fast sweep pack; do echo "  \"$k\": ${T[$k]:-null},"; done
  echo "  \"budget_s\": $BUDGET_S, \"finished_s\": $(now) }"; } > "$OUT/timings.json"
log "done in $(now)s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
