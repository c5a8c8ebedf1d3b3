#!/usr/bin/env bash
# Every check that needs a GPU, in one call (a lent GPU machine is held for minutes): the CUDA
# tests, a bake's train/evaluate/release on CUDA, the loss and throughput benchmarks. Each step has
# its own time limit, so a slow one costs only itself; each writes $OUT/<step>.txt, and the last
# lines printed are a summary. Run from the repository root, on the GPU machine:
#   bash benchmarks/gpu.sh tests bake loss   # one call, under 10 minutes whatever happens
#   bash benchmarks/gpu.sh throughput        # another: the three sizes, 190 s each at most (SIZES="ttl-460m": fewer)
#   bash benchmarks/gpu.sh fit               # if minutes are left: 1.3B at micro-batch 8 with `ops`; 160M compiled whole
#   bash benchmarks/gpu.sh memory            # fournil plan's memory formula against the allocator's peak
#   bash benchmarks/gpu.sh sft               # SFT tokens/s against pretraining's at ttl-160m, context 2048
# Before the call, on this machine: scripts/gpu_wheels.sh (dependencies the image lacks, into .whl/)
# and `fournil run tests/recipes/mini.yaml --until mixture` (the bake's CPU stages, into runs/mini/);
# the call carries .whl and runs/mini. See docs/train.md, "On a GPU".
set -uo pipefail
out=${OUT:-/tmp/fournil-gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fournil-site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/fournil-site"
fi
$python - <<'PY' || { echo "could not build src/fournil/corpus/_kernels.c: a C compiler and Python's headers are needed"; exit 1; }
import pathlib, subprocess, sysconfig  # the corpus stage's C loops (language ID, word hashes), as pip install -e builds them
source = pathlib.Path("src/fournil/corpus/_kernels.c")
built = source.with_name("_kernels" + sysconfig.get_config_var("EXT_SUFFIX"))
if not built.exists() or built.stat().st_mtime < source.stat().st_mtime:
    subprocess.run([(sysconfig.get_config_var("CC") or "cc").split()[0], "-O3", "-shared", "-fPIC",
                    "-I" + sysconfig.get_paths()["include"], str(source), "-o", str(built)], check=True)
PY
summary=()

step() {  # step NAME SECONDS COMMAND...: run it under a limit, keep its output, note its status and time
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  local status=${PIPESTATUS[0]}
  summary+=("$(printf '%-22s exit %-3s %4ss' "$name" "$status" $((SECONDS - start)))")
}

bake() {  # the train, sft, evaluate and release stages of the mini recipe, whose CPU stages ran here
  [ -f runs/mini/mixture/manifest.json ] || { echo "runs/mini/mixture is missing: run the bake's CPU stages first (see the header)"; return 1; }
  for stage in train sft evaluate release; do
    $python -m fournil "$stage" tests/recipes/mini.yaml || return 1
  done
  $python - <<'PY'
import json
train = json.load(open("runs/mini/train/manifest.json"))["figures"]
evaluate = json.load(open("runs/mini/evaluate/manifest.json"))["figures"]
print({k: train[k] for k in ("device", "precision", "tokens_per_second", "mfu", "peak_flops_source", "energy")})
print({lang: f.get("bits_per_byte") for lang, f in evaluate.get("per_language", {}).items()})
PY
}

steps=${*:-tests bake loss throughput}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,power.draw --format=csv; $python -c "import torch; print('torch', torch.__version__)"; } | tee "$out/gpu.txt"
for s in $steps; do
  case $s in
    tests) step tests 240 $python -m pytest -q -p no:cacheprovider -k cuda tests/test_device.py ;;
    bake) export -f bake; export python; step bake 240 bash -c bake ;;
    loss) step loss 90 $python benchmarks/loss.py ;;
    throughput)
      for size in ${SIZES:-ttl-460m croissant-1.3b ttl-160m}; do
        step "throughput-$size" 190 $python benchmarks/throughput.py --sizes "$size"
      done ;;
    fit)  # if time is left: croissant-1.3b at twice the micro-batch with op-level checkpointing; ttl-160m compiled whole
      step throughput-1.3b-ops 190 $python benchmarks/throughput.py --sizes croissant-1.3b --batch 8 --activation-checkpointing ops
      step throughput-160m-whole 150 $python benchmarks/throughput.py --sizes ttl-160m --compile-whole --no-trainer --no-peer ;;
    sft) step sft 200 $python benchmarks/sft.py --tokenizer runs/mini/tokenizer --size ttl-160m --seq-len 2048 --micro-batch 8 --steps 12 --repeats 2 ;;
    memory) step memory 150 $python benchmarks/memory.py --sizes ttl-160m,croissant/w512 --rows 8 --seq-len 2048 ;;
    *) echo "unknown step $s (steps: tests bake loss throughput fit memory sft)"; exit 2 ;;
  esac
done
echo "== summary"
printf '%s\n' "${summary[@]}"
shopt -s nullglob
for f in "$out"/throughput-*.txt; do tail -n 1 "$f"; done
