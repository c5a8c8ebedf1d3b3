"""Self-instruct throughput against the endpoint's own single-stream rate.

A scripted OpenAI-compatible server on 127.0.0.1 answers every request after a fixed delay (a
stand-in for a teacher's generation time) with `new_tasks` tasks in the language's layout. The
endpoint's single-stream rate is measured first with plain sequential requests; then
`fournil instruct generate` runs with `--concurrency` requests in flight, filters and journal
included. Printed: answers/s and kept examples/s of both, and the ratios (a kept example/s ratio
below the answers/s one is the share the filters drop or leave unexamined at the target).

    python benchmarks/instruct.py --delay 0.2 --concurrency 8 --examples 150
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from instruct_server import FakeTeacher  # noqa: E402

from fournil.instruct.config import InstructConfig  # noqa: E402
from fournil.instruct.generate import generate  # noqa: E402


def single_stream(url: str, requests: int) -> float:
    """Answers/s of the endpoint asked one request at a time (no filters, no journal)."""
    started = time.perf_counter()
    for i in range(requests):
        body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "x"}]}).encode()
        request = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "X-Request-Id": f"en-{900000 + i:06d}"})
        with urllib.request.urlopen(request) as response:
            json.loads(response.read())
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--examples", type=int, default=150, help="examples per language")
    parser.add_argument("--languages", default="en,fr,de,es,it,pt")
    parser.add_argument("--new-tasks", type=int, default=5)
    args = parser.parse_args()
    languages = args.languages.split(",")
    with FakeTeacher(delay=args.delay, new_tasks=args.new_tasks) as teacher, tempfile.TemporaryDirectory() as folder:
        baseline = single_stream(teacher.url, 20)
        cfg = InstructConfig.model_validate({
            "output": folder, "languages": languages, "examples_per_language": args.examples, "new_tasks": args.new_tasks,
            "teacher": {"base_url": teacher.url, "model": "fake", "concurrency": args.concurrency}})
        stats = generate(cfg, progress=False)
        run = stats["this_run"]
        answers, kept = run["requests_sent"] / run["seconds"], run["new_examples"] / run["seconds"]
        judged = sum(s["candidates"] for s in stats["languages"].values())
        print(f"endpoint single stream: {baseline:.2f} answers/s = {baseline * args.new_tasks:.1f} examples/s "
              f"({args.new_tasks} tasks per answer, {args.delay:g} s per answer)")
        print(f"fournil instruct, {args.concurrency} in flight: {answers:.2f} answers/s, {kept:.1f} examples/s kept "
              f"({run['new_examples']} kept of {judged} judged, {run['requests_sent']} requests, {run['seconds']:.2f} s)")
        print(f"ratio: {answers / baseline:.2f}x the endpoint's single-stream answers/s, "
              f"{kept / (baseline * args.new_tasks):.2f}x its examples/s (limit: {args.concurrency}x)")

if __name__ == "__main__":
    main()
