"""What checking a run folder's outputs against its manifests costs: xxh3-128 (fournil) against
sha256 (what manifests recorded before), over every file that a skip or a later stage checks.

    python benchmarks/integrity.py runs/demo
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import xxhash

from fournil.runs import STAGES, check_outputs, read_manifest


def hash_all(files: list[Path], make) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    for path in files:
        h = make()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return time.perf_counter() - t0


def main(run_dir: Path) -> None:
    files = [p for p in sorted(run_dir.rglob("*")) if p.is_file() and "checkpoints" not in p.parts and p.name != "manifest.json"]
    size = sum(p.stat().st_size for p in files)
    for path in files:  # warm the page cache, so both hashes read from memory
        path.read_bytes()
    sha = min(hash_all(files, hashlib.sha256) for _ in range(3))
    xxh = min(hash_all(files, xxhash.xxh3_128) for _ in range(3))
    t0 = time.perf_counter()
    for stage in STAGES:
        if (run_dir / stage.name / "manifest.json").is_file():
            check_outputs(run_dir / stage.name, read_manifest(run_dir / stage.name))
    check = time.perf_counter() - t0
    print(f"{len(files)} files, {size / 1e6:.1f} MB (checkpoints excluded: they carry their own checksums)")
    print(f"xxh3-128 {xxh * 1e3:.1f} ms ({size / xxh / 1e9:.2f} GB/s), sha256 {sha * 1e3:.1f} ms ({size / sha / 1e9:.2f} GB/s): "
          f"xxh3 is {sha / xxh:.1f}x faster")
    print(f"check_outputs over every stage (first call in this process, manifests of the fournil that baked it): {check * 1e3:.1f} ms")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
