"""Which shipped tasks carry signal: each task on every checkpoint of a run, judged by FineTasks' criteria.

    python benchmarks/tasks.py --run runs/demo                       # the run's languages, every kept checkpoint
    python benchmarks/tasks.py --run runs/demo --tasks minimal_pairs_fr,continuation_fr --max-examples 200

For each task: its headline score at each checkpoint (tokens seen), the Spearman correlation of score
with tokens seen (monotonicity: a task that does not rise as the model learns cannot rank models),
and the final score's distance from chance in standard errors (non-randomness), as FineTasks (Kydlíček
et al. 2024) chose its tasks; plus the spread of the last three checkpoints' scores against the
final stderr (noise). Bake checkpoints densely for this (`--set train.checkpoint_every=25
--set train.milestone_every=25`). The peer: lm-eval (when installed) scores the first multiple-choice task
on the final checkpoint; its acc must equal fournil's, and the ratio of the two wall times is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation of the ranks; None when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder with train/checkpoints and train/final")
    parser.add_argument("--tasks", help="comma-separated tasks; default every shipped task in the run's languages")
    parser.add_argument("--max-examples", type=int, default=None, help="examples per task (default all; translation 100)")
    parser.add_argument("--steps", help="comma-separated checkpoint steps to score (final always); default every kept one")
    parser.add_argument("--threads", type=int, help="torch threads; 1 on a busy machine (2 threads there spin and run 10x slower)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from fournil.evaluate.config import SHIPPED_TASKS, EvaluateConfig
    from fournil.evaluate.runner import run_task
    from fournil.evaluate.stage import checkpoints, open_checkpoint, select_tasks
    from fournil.evaluate.suite import main_metric
    from fournil.tokenizer import load, special_ids

    manifest = json.loads((args.run / "train" / "manifest.json").read_text())
    languages = sorted(p.name for p in (args.run / "corpus" / "heldout").iterdir() if p.is_dir())
    specs = [t.strip() for t in args.tasks.split(",")] if args.tasks else SHIPPED_TASKS
    tasks = select_tasks(specs, languages, Path.cwd(), log=lambda m: None)
    tokenizer, ids = load(args.run / "tokenizer"), special_ids(args.run / "tokenizer")
    config = EvaluateConfig()
    found = checkpoints(args.run / "train", manifest, "all")
    if args.steps:
        wanted = {int(x) for x in args.steps.split(",")}
        found = [c for c in found if c[0] == "final" or c[2] in wanted]
    print(f"{args.run}: {len(found)} checkpoints ({', '.join(str(t) for *_, t in found)} tokens), languages {', '.join(languages)}")
    series: dict[str, list[tuple[int, dict]]] = {t.name: [] for t in tasks}
    seconds = {}
    for name, folder, step, tokens in found:
        s = open_checkpoint(folder, tokenizer, ids, args.device)
        for task in tasks:
            limit = args.max_examples or (100 if task.output_type == "generate_until" else None)
            t0 = time.perf_counter()
            result = run_task(s, task, None, limit, config.seed, config.batch_size, 32)
            seconds[task.name] = time.perf_counter() - t0
            series[task.name].append((tokens, result))
        print(f"  {name}: " + ", ".join(f"{n} {r[-1][1]['metrics'][main_metric(r[-1][1])]['value']:.3f}" for n, r in series.items()),
              flush=True)
    rows = []
    print(f"\n{'task':<20} {'metric':<6} {'n':>4} {'first':>7} {'final':>7} {'stderr':>7} {'chance':>6} {'spearman':>8} "
          f"{'z vs chance':>11} {'last-3 spread/stderr':>20}")
    for task in tasks:
        points = series[task.name]
        final = points[-1][1]
        metric = main_metric(final)
        values = [r["metrics"][metric]["value"] for _, r in points]
        stderr = final["metrics"][metric]["stderr"]
        chance = final["metrics"].get("chance")
        rho = spearman([float(t) for t, _ in points], values)
        z = (values[-1] - chance) / stderr if chance is not None and stderr else None
        spread = statistics.pstdev(values[-3:]) / stderr if len(values) >= 3 and stderr else None
        rows.append({"task": task.name, "metric": metric, "examples": final["examples"], "tokens": [t for t, _ in points],
                     "scores": values, "stderr": stderr, "chance": chance, "spearman": rho, "z_vs_chance": z, "noise": spread})
        fmt = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
        print(f"{task.name:<20} {metric:<6} {final['examples']:>4} {fmt(values[0]):>7} {fmt(values[-1]):>7} {fmt(stderr):>7} "
              f"{fmt(chance, 2):>6} {fmt(rho, 2):>8} {fmt(z, 1):>11} {fmt(spread, 2):>20}")
    peer(tasks, found[-1][1], args, seconds)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def peer(tasks, final_dir: Path, args, seconds: dict[str, float]) -> None:
    """lm-eval on the final checkpoint for the first multiple-choice task: the same acc, and the time ratio."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("\npeer: lm-eval is not installed (pip install 'fournil[eval]'); no comparison")
        return
    from fournil.evaluate.harness import run_harness
    from fournil.evaluate.models import open_model
    from fournil.evaluate.runner import run_task

    task = next(t for t in tasks if t.output_type == "multiple_choice")
    limit = args.max_examples
    t0 = time.perf_counter()
    ours = run_task(open_model(final_dir, args.run / "tokenizer", args.device), task, 0, limit)["metrics"]["acc"]
    mine = time.perf_counter() - t0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        theirs = run_harness(final_dir, [task.name], Path(tmp), args.run / "tokenizer", 0, limit, 8, args.device)["results"][task.name]
        harness = time.perf_counter() - t0
    print(f"\npeer, {task.name} on the final checkpoint ({ours['examples']} examples): fournil acc {ours['value']:.4f} in {mine:.1f} s, "
          f"lm-eval acc {theirs['acc,none']:.4f} in {harness:.1f} s (export included); ratio lm-eval/fournil {harness / mine:.1f}×")


if __name__ == "__main__":
    main()
