"""The self-instruct loop: requests in flight, answers journaled, candidates judged in a fixed order.

Requests are numbered per language (`fr-000012`); the seed tasks they show and the seed they send
follow from the config's seed and that number, so a request is the same on any run. Answers go to
`answers.jsonl` as they arrive, in any order; a request answered there is never sent again. The
answers are then judged strictly in request order (round by round, languages in config order),
whatever the threads did, so `examples.jsonl` and `dropped.jsonl` are a function of the answers: a
resumed run replays the answers it has to rebuild the filters' state, writes only the records not
yet on disk (checked id by id), and goes on. A line torn by a kill is cut off when a file is opened.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from fournil.errors import FournilError
from fournil.evaluate.metrics import words
from fournil.instruct.config import InstructConfig
from fournil.instruct.filters import SimilarityPool, blacklisted, letters
from fournil.instruct.languages import Pack, Task, load_pack, parse_tasks
from fournil.instruct.teacher import Answer, EndpointTeacher, LocalTeacher, TeacherError

FILES = ("answers.jsonl", "examples.jsonl", "dropped.jsonl", "settings.json", "stats.json")
OPENING_MARKS = "¿¡«“„\"'("


class Journal:
    """An append-only JSONL file; opening it cuts a torn last line and reads the records before it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict] = []
        if path.is_file():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with path.open("r+b") as f:
                    f.truncate(end)
            for number, line in enumerate(data[:end].splitlines(), 1):
                try:
                    self.records.append(json.loads(line))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise FournilError(f"instruct: {path} line {number} is not JSON; repair it, or run with --force to start afresh") from None
        self._file = path.open("a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class LanguageState:
    pack: Pack
    pool: SimilarityPool = field(default_factory=SimilarityPool)
    kept: int = 0
    requests: int = 0
    unparsable_answers: int = 0
    candidates: int = 0
    dropped: Counter = field(default_factory=Counter)
    not_examined: int = 0


class Output:
    """examples.jsonl and dropped.jsonl, written as the judged stream passes what they already hold."""

    def __init__(self, folder: Path) -> None:
        self.files = {name: Journal(folder / f"{name}.jsonl") for name in ("examples", "dropped")}
        self.seen = {name: 0 for name in self.files}
        self.written = 0

    def emit(self, name: str, record: dict) -> None:
        journal, at = self.files[name], self.seen[name]
        if at < len(journal.records):
            if journal.records[at].get("id") != record["id"]:
                raise FournilError(f"instruct: {journal.path} line {at + 1} is {journal.records[at].get('id')!r} where the answers give "
                                   f"{record['id']!r}; the folder was edited or made by another fournil: run with --force to start afresh")
        else:
            journal.append(record)
            self.written += name == "examples"
        self.seen[name] = at + 1

    def check_complete(self) -> None:
        for name, journal in self.files.items():
            if self.seen[name] < len(journal.records):
                raise FournilError(f"instruct: {journal.path} holds {len(journal.records)} records where this config leads to "
                                   f"{self.seen[name]} (was examples_per_language lowered?); raise it back, or use --force")

    def close(self) -> None:
        for journal in self.files.values():
            journal.close()


def request_seed(seed: int, request_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{request_id}".encode()).digest()[:4], "big") >> 1


def make_teacher(cfg: InstructConfig):
    t = cfg.teacher
    if t.model_dir is not None:
        return LocalTeacher(str(cfg.resolve(t.model_dir)), t.temperature, t.top_p, t.max_tokens, t.device)
    return EndpointTeacher(t.base_url, t.model, t.api_key_env, t.temperature, t.top_p, t.max_tokens, t.timeout_s, t.retries, t.backoff_s)


def settings_of(cfg: InstructConfig, packs: dict[str, Pack]) -> dict:
    """What decides the records: changing any of it under an existing folder would mix two data sets
    (the endpoint's address is not part of it: a server restarted elsewhere serves the same model)."""
    t = cfg.teacher
    return {
        "languages": {lang: {"pack": hashlib.sha256(json.dumps([p.labels, p.prompt, p.blacklist, [s.__dict__ for s in p.seeds]],
                                                                ensure_ascii=False).encode()).hexdigest()[:16]}
                      for lang, p in packs.items()},
        "order": list(packs),  # requests are judged round by round in this order
        "seed": cfg.seed, "seed_examples": cfg.seed_examples, "new_tasks": cfg.new_tasks,
        "teacher": {"model": t.model, "model_dir": t.model_dir, "temperature": t.temperature,
                    "top_p": t.top_p, "max_tokens": t.max_tokens},
        "filters": cfg.filters.model_dump(mode="json"),
    }


def _changed(old: dict, new: dict, where: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _changed(a, b, f"{where}{key}.")
        elif a != b:
            found.append(f"{where}{key}")
    return found


class Judge:
    """Self-Instruct's filters for one language's candidates, with every verdict recorded."""

    def __init__(self, cfg: InstructConfig) -> None:
        from fournil.corpus.langid import make_identifier

        self.f = cfg.filters
        self.identifier = make_identifier(tuple(sorted(set(self.f.langid_languages) | set(cfg.languages))), "py3langid", None)

    def language_scores(self, texts: list[str], lang: str) -> list[float | None]:
        """The probability of `lang` per text, or None when the text is too short to tell; -p when another language wins."""
        probs = self.identifier.probabilities(texts)
        column = self.identifier.labels.index(lang)
        scores: list[float | None] = []
        for text, row in zip(texts, probs):
            if letters(text) < self.f.language_min_letters:
                scores.append(None)
                continue
            p = round(float(row[column]), 4)
            scores.append(p if int(row.argmax()) == column else -p)
        return scores

    def verdict(self, task: Task, state: LanguageState, scores: tuple[float | None, float | None]) -> tuple[str | None, dict]:
        """(the reason to drop, or None) and the verdicts measured up to that point."""
        f = self.f
        v: dict = {"instruction_words": len(words(task.instruction)), "output_words": len(words(task.output))}
        lo, hi = f.instruction_words
        if v["instruction_words"] < lo:
            return "instruction_too_short", v
        if v["instruction_words"] > hi:
            return "instruction_too_long", v
        lo, hi = f.output_words
        if v["output_words"] < lo:
            return "output_too_short", v
        if v["output_words"] > hi:
            return "output_too_long", v
        if not (task.instruction[0].isalnum() or task.instruction[0] in OPENING_MARKS):
            return "starts_with_punctuation", v
        v["blacklist"] = blacklisted(task.instruction, state.pack.blacklist)
        if v["blacklist"]:
            return "blacklisted", v
        v["language"] = {"instruction": scores[0], "output": scores[1]}
        for part, score in zip(("instruction", "output"), scores):
            if score is not None and score < f.language_min_score:
                return f"{part}_wrong_language", v
        similarity, closest = state.pool.closest(task.instruction, f.rouge_l)
        v["rouge_l"] = {"max": round(similarity, 4), "closest": closest}
        if similarity >= f.rouge_l:
            return "too_similar", v
        return None, v


class Generation:
    """One invocation: the config's packs, teacher, judge and output folder."""

    def __init__(self, cfg: InstructConfig, force: bool = False, teacher=None) -> None:
        self.cfg = cfg
        self.folder = cfg.resolve(cfg.output)
        self.languages = list(cfg.languages)
        packs = {}
        for lang, opts in cfg.languages.items():
            pack = load_pack(lang, cfg.resolve(opts.seeds_file) if opts.seeds_file else None,
                             cfg.resolve(opts.prompt_file) if opts.prompt_file else None)
            packs[lang] = Pack(pack.lang, pack.labels, pack.prompt, pack.blacklist + tuple(opts.blacklist), pack.seeds)
        self.folder.mkdir(parents=True, exist_ok=True)
        settings_file = self.folder / "settings.json"
        settings = settings_of(cfg, packs)
        if force:
            for name in FILES:
                (self.folder / name).unlink(missing_ok=True)
        elif settings_file.is_file():
            changed = _changed(json.loads(settings_file.read_text(encoding="utf-8")), settings)
            if changed:
                raise FournilError(f"instruct: {self.folder} was generated with other settings ({', '.join(changed)}); "
                                   "use another output folder, or --force to start afresh")
        settings_file.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.states = {lang: LanguageState(p) for lang, p in packs.items()}
        for lang, state in self.states.items():
            for s in state.pack.seeds:
                state.pool.add(s.id, s.instruction)
        self.teacher = teacher or make_teacher(cfg)
        self.judge = Judge(cfg)
        self.answers_journal = Journal(self.folder / "answers.jsonl")
        self.answers = {r["id"]: r for r in self.answers_journal.records}
        self.output = Output(self.folder)
        self.sent = self.attempts = self.max_in_flight = 0
        self.tokens = 0

    # the order of judging: round k, languages in config order, skipping finished languages
    def _live(self, k: int, j: int) -> bool:
        return k < self.cfg.max_requests and self.states[self.languages[j]].kept < self.cfg.examples_per_language

    def _next(self, k: int, j: int, inclusive: bool) -> tuple[int, int] | None:
        if not inclusive:
            k, j = (k + 1, 0) if j + 1 == len(self.languages) else (k, j + 1)
        while k < self.cfg.max_requests:
            if self._live(k, j):
                return k, j
            k, j = (k + 1, 0) if j + 1 == len(self.languages) else (k, j + 1)
        return None

    def _request_id(self, key: tuple[int, int]) -> str:
        return f"{self.languages[key[1]]}-{key[0]:06d}"

    def _ask(self, key: tuple[int, int]) -> dict:
        k, j = key
        lang = self.languages[j]
        pack = self.states[lang].pack
        rid = self._request_id(key)
        seeds = pack.pick_seeds(self.cfg.seed, k, self.cfg.seed_examples)
        started = time.perf_counter()
        answer: Answer = self.teacher.complete(rid, pack.render(seeds, self.cfg.new_tasks), request_seed(self.cfg.seed, rid))
        return {"id": rid, "lang": lang, "index": k, "seed_tasks": [s.id for s in seeds], "teacher": self.teacher.name,
                "attempts": answer.attempts, "seconds": round(time.perf_counter() - started, 3),
                "finish_reason": answer.finish_reason, "completion_tokens": answer.completion_tokens, "content": answer.content}

    def _judge_request(self, record: dict) -> None:
        state = self.states[record["lang"]]
        target = self.cfg.examples_per_language
        state.requests += 1
        tasks = parse_tasks(state.pack, record["content"])
        if not any(tasks):
            state.unparsable_answers += 1
            self.output.emit("dropped", {"id": record["id"], "lang": record["lang"], "request": record["id"], "reason": "no_task_parsed",
                                         "content": record["content"][:2000]})
            return
        texts = [text for t in tasks if t for text in (t.instruction, t.output)]
        scores = iter(self.judge.language_scores(texts, record["lang"]))
        for number, task in enumerate(tasks):
            pair = (next(scores), next(scores)) if task else (None, None)
            if state.kept >= target:
                state.not_examined += len(tasks) - number
                return
            state.candidates += 1
            example_id = f"{record['id']}-{number}"
            if task is None:
                state.dropped["malformed_task"] += 1
                self.output.emit("dropped", {"id": example_id, "lang": record["lang"], "request": record["id"], "reason": "malformed_task"})
                continue
            reason, verdicts = self.judge.verdict(task, state, pair)
            fields = {"instruction": task.instruction, "input": task.input, "output": task.output}
            if reason:
                state.dropped[reason] += 1
                self.output.emit("dropped", {"id": example_id, "lang": record["lang"], "request": record["id"], "reason": reason,
                                             **fields, "filters": verdicts})
                continue
            state.kept += 1
            state.pool.add(example_id, task.instruction)
            prompt = f"{task.instruction}\n\n{task.input}" if task.input else task.instruction
            self.output.emit("examples", {
                "id": example_id, "lang": record["lang"],
                "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": task.output}],
                "meta": {"teacher": record["teacher"], "request": record["id"], "seed_tasks": record["seed_tasks"], **fields,
                         "language_score": verdicts["language"], "filters": verdicts},
            })

    def run(self, progress: bool = True) -> dict:
        """Generate until every language has its examples (or its requests run out); returns the stats."""
        started = time.perf_counter()
        frontier = self._next(0, 0, inclusive=True)
        in_flight: dict[Future, tuple[int, int]] = {}
        failure: Exception | None = None
        bar = _Bar(progress, len(self.languages) * self.cfg.examples_per_language)
        pool = ThreadPoolExecutor(self.cfg.teacher.concurrency, thread_name_prefix="instruct")
        try:
            while True:
                while frontier is not None and self._request_id(frontier) in self.answers:
                    self._judge_request(self.answers[self._request_id(frontier)])
                    frontier = self._next(*frontier, inclusive=False)
                bar.show(sum(s.kept for s in self.states.values()))
                if frontier is None or (failure is not None and not in_flight):
                    break
                if failure is None:
                    self._top_up(pool, frontier, in_flight)
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                found = self._record(done, in_flight)
                failure = failure or found
                if failure is None:  # send the next requests before judging these answers
                    self._top_up(pool, frontier, in_flight)
            self._record(wait(in_flight).done, in_flight)  # look-ahead answers: kept for a run that asks for more
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            self.answers_journal.close()
            self.output.close()
            stats = self._stats(time.perf_counter() - started, finished=failure is None)
            (self.folder / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if failure is not None:
            kept = sum(s.kept for s in self.states.values())
            raise TeacherError(f"{failure}; the {kept} examples kept so far are in {self.folder / 'examples.jsonl'}: "
                               "run the same command again to go on")
        self.output.check_complete()
        return stats

    def _record(self, done: set[Future], in_flight: dict) -> TeacherError | None:
        """Journal the answers of finished requests; the first teacher failure among them, if any."""
        failure = None
        for future in sorted(done, key=lambda f: in_flight[f]):
            in_flight.pop(future)
            try:
                record = future.result()
            except TeacherError as error:
                failure = failure or error
                continue
            self.answers_journal.append(record)
            self.answers[record["id"]] = record
            self.attempts += record["attempts"]
            self.tokens += record["completion_tokens"] or 0
        return failure

    def _top_up(self, pool: ThreadPoolExecutor, frontier: tuple[int, int], in_flight: dict) -> None:
        """Keep `concurrency` requests in flight, taken in judging order from the frontier (a bounded look-ahead)."""
        asked = {self._request_id(key) for key in in_flight.values()}
        key: tuple[int, int] | None = frontier
        for _ in range(4 * self.cfg.teacher.concurrency):
            if key is None or len(in_flight) >= self.cfg.teacher.concurrency:
                break
            rid = self._request_id(key)
            if rid not in self.answers and rid not in asked:
                in_flight[pool.submit(self._ask, key)] = key
                self.sent += 1
            key = self._next(*key, inclusive=False)
        self.max_in_flight = max(self.max_in_flight, len(in_flight))

    def _stats(self, seconds: float, finished: bool) -> dict:
        target = self.cfg.examples_per_language
        per_language = {}
        for lang, s in self.states.items():
            per_language[lang] = {
                "target": target, "kept": s.kept, "requests": s.requests, "unparsable_answers": s.unparsable_answers,
                "candidates": s.candidates, "dropped": dict(sorted(s.dropped.items())), "not_examined": s.not_examined,
                "gave_up": s.kept < target and s.requests >= self.cfg.max_requests,
            }
        new = self.output.written
        return {
            "teacher": self.teacher.name,
            "finished": finished and all(s.kept >= target for s in self.states.values()),
            "languages": per_language,
            "kept": sum(s.kept for s in self.states.values()),
            "dropped": sum(sum(s.dropped.values()) + s.unparsable_answers for s in self.states.values()),
            "answers_on_disk": len(self.answers),
            "this_run": {"seconds": round(seconds, 3), "requests_sent": self.sent, "attempts": self.attempts,
                         "new_examples": new, "examples_per_second": round(new / seconds, 3) if seconds > 0 else None,
                         "max_in_flight": self.max_in_flight, "completion_tokens": self.tokens or None},
        }


class _Bar:
    """The kept examples out of the target, with rate and ETA (nothing when progress is off)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.progress = None
        if enabled:
            from fournil.progress import bar

            self.progress = bar()
            self.progress.start()
            self.task = self.progress.add_task("instruct", total=total, rate="")

    def show(self, kept: int) -> None:
        if self.progress is not None:
            speed = self.progress.tasks[0].speed
            self.progress.update(self.task, completed=kept, rate=f"{speed:,.1f} examples/s" if speed else "")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def generate(cfg: InstructConfig, force: bool = False, progress: bool = True, teacher=None) -> dict:
    """Run self-instruct for `cfg`; resumes what its output folder holds."""
    return Generation(cfg, force, teacher).run(progress)
