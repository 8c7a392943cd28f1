#!/usr/bin/env bash
# The GPU path in one call: install the CUDA build, run the test suite on CUDA, run bench-speed's GPU cases.
#
#   bash benchmarks/speed/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT, else benchmarks/speed/gpu
#
# Steps, each logged to OUT_DIR/<step>.log, and a summary at the end (OUT_DIR/summary.txt):
#   1. install   requirements/gpu.txt (CUDA torch + fbgemm-gpu), torchrec --no-deps, the tests' needs, this
#                project (-e). A machine that cannot reach a package index: put wheels built for each other
#                (torch, fbgemm-gpu, torchrec and their needs) in .whl/ and they are installed from there.
#                fbgemm-gpu's CUDA wheel is ~500 MB.
#   2. gpu       the card, its memory, torch's CUDA and NCCL versions.
#   3. tests     the test suite with CUDA visible: init_distributed picks nccl and the GPU, so the jobs' tests
#                run fbgemm's CUDA kernels; tests/jobs/test_tower_precision.py's GPU test checks nccl, row-wise
#                sharding, the fused optimizer and the bf16 tower through TorchRec's pipeline.
#   4. bench     bench-speed with jobs/configs/bench_speed_gpu.yaml (bf16, batch 4096, up to 2,336 behaviours);
#                writes OUT_DIR/speed.{json,md,png}, the card named in speed.md's header.
#
# Knobs (environment): PYTHON (default python3), PMX_SKIP_INSTALL=1 (use what is installed),
# PMX_TESTS (pytest arguments; default: the whole default suite), PMX_BENCH_CONFIG (the bench's config; default
# jobs/configs/bench_speed_gpu.yaml), PMX_BENCH_SET (extra --set overrides, e.g. "repeats=3"), PMX_ALLOW_CPU=1
# (run every step without a GPU: how tests/jobs/test_gpu_check.py checks this script).
# Every step runs even if one before it failed; the exit status is the number of steps that failed.
set -uo pipefail

cd "$(dirname "$0")/../.."
out=${1:-${OUT:-benchmarks/speed/gpu}}
mkdir -p "$out"
py=${PYTHON:-python3}
summary="$out/summary.txt"
: >"$summary"
failed=0

step() {  # step NAME COMMAND...: runs COMMAND, logs to $out/NAME.log, records ok / FAILED with its time
    local name=$1 start=$SECONDS rc
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        echo "$name: ok ($((SECONDS - start)) s)" | tee -a "$summary"
    else
        echo "$name: FAILED, exit $rc ($((SECONDS - start)) s); see $out/$name.log" | tee -a "$summary"
        failed=$((failed + 1))
    fi
}

install() {
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        "$py" -m pip install -q --no-index --no-deps .whl/*.whl || return
    else
        "$py" -m pip install -q -r requirements/gpu.txt -r requirements/test.txt || return
        "$py" -m pip install -q --no-deps -r requirements/torchrec.txt || return
    fi
    "$py" -m pip install -q --no-deps --no-build-isolation -e .
}

gpu() {
    "$py" - <<'PY'
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda)
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device visible to torch (set PMX_ALLOW_CPU=1 to check this script on a CPU)")
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs; NCCL",
      ".".join(map(str, torch.cuda.nccl.version())))
PY
}

if [ "${PMX_SKIP_INSTALL:-0}" != 1 ]; then
    step install install
fi
if [ "${PMX_ALLOW_CPU:-0}" = 1 ]; then
    step gpu "$py" -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())"
else
    step gpu gpu
fi
# shellcheck disable=SC2086  # PMX_TESTS and PMX_BENCH_SET are word lists
step tests "$py" -m pytest -p no:cacheprovider ${PMX_TESTS:-}
# shellcheck disable=SC2086
step bench "$py" -m pyramid_mixer.jobs.bench.speed --config "${PMX_BENCH_CONFIG:-jobs/configs/bench_speed_gpu.yaml}" \
    --set "out_dir=$out" ${PMX_BENCH_SET:-}

echo "== summary ($out/summary.txt)"
cat "$summary"
exit "$failed"
