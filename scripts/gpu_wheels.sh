#!/usr/bin/env bash
# Wheels of what fournil needs that the lent GPU machine's image lacks (that machine reaches no
# package registry): downloaded here into .whl/ (ignored by git), at the versions this checkout's
# .venv runs, for that machine's Python; carried with the call and installed by benchmarks/gpu.sh.
#   scripts/gpu_wheels.sh            # for the image's Python 3.12
#   PYVER=3.11 scripts/gpu_wheels.sh # for another Python (a rehearsal on this machine)
set -euo pipefail
cd "$(dirname "$0")/.."
pins=$(.venv/bin/python - <<'PY'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "zstandard", "datatrove", "dill",
                                                  "multiprocess", "loguru", "py3langid", "ftfy", "wcwidth", "gguf")))
PY
)
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl $pins
ls .whl
