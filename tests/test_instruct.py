"""Multilingual self-instruct against a scripted OpenAI-compatible server on 127.0.0.1: seed packs,
parsing, the filters (French near-duplicates included), retries, errors, counts, and resume after a kill."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from fournil.errors import FournilError
from fournil.instruct.config import InstructConfig, load_config
from fournil.instruct.filters import SimilarityPool, blacklisted, lcs_length, positions
from fournil.instruct.generate import Judge, LanguageState, generate
from fournil.instruct.languages import Task, load_pack, parse_tasks

sys.path.insert(0, str(Path(__file__).parent))
from instruct_server import ASK, FakeTeacher, Reply, task_answer  # noqa: E402

LANGS = ["en", "fr", "de", "es", "it", "pt"]
ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, url: str, **extra) -> InstructConfig:
    data = {"output": str(tmp_path / "out"), "languages": ["fr", "de"], "examples_per_language": 6, "seed_examples": 2,
            "new_tasks": 3, "teacher": {"base_url": url, "model": "fake", "concurrency": 4, "retries": 3, "backoff_s": 0.01, "timeout_s": 5}}
    for key, value in extra.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return InstructConfig.model_validate(data)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_seed_packs_are_native_varied_and_pass_their_own_filters():
    cfg = InstructConfig.model_validate({"output": "x", "languages": LANGS, "examples_per_language": 1,
                                         "teacher": {"base_url": "http://127.0.0.1:1/v1", "model": "m"}})
    judge = Judge(cfg)
    for lang in LANGS:
        pack = load_pack(lang)
        assert len(pack.seeds) >= 25 and len({s.id for s in pack.seeds}) == len(pack.seeds)
        # the prompt is written in the language itself
        prompt_score = judge.language_scores([pack.prompt], lang)[0]
        assert prompt_score is not None and prompt_score > 0.9, (lang, prompt_score)
        state = LanguageState(pack)
        for seed in pack.seeds:
            scores = judge.language_scores([seed.instruction, seed.output], lang)
            reason, verdicts = judge.verdict(Task(seed.instruction, seed.input, seed.output), state, tuple(scores))
            assert reason is None, (seed.id, reason, verdicts)
            state.pool.add(seed.id, seed.instruction)  # no two seeds are near-duplicates
        assert len({s.instruction.split()[0] for s in pack.seeds}) >= 15, lang  # varied verbs, not one template


def test_parse_tasks_reads_the_layout_with_markdown_and_counts_broken_blocks():
    pack = load_pack("fr")
    text = ("Tâche 3\nConsigne : Explique ce qu'est un haïku.\nEntrée : (aucune)\nRéponse : Un petit poème japonais.\n\n"
            "**Tâche 4**\n**Consigne :** Traduis en français.\n**Entrée :** Good morning\n**Réponse :** Bonjour.\nDeuxième ligne.\n\n"
            "Tâche 5\nConsigne : Une consigne sans réponse\n")
    assert parse_tasks(pack, text) == [Task("Explique ce qu'est un haïku.", "", "Un petit poème japonais."),
                                       Task("Traduis en français.", "Good morning", "Bonjour.\nDeuxième ligne."), None]
    assert parse_tasks(pack, "Je ne sais pas.") == []


def test_bit_parallel_lcs_equals_the_table():
    rnd = random.Random(0)
    for _ in range(500):
        a, b = ([rnd.randrange(5) for _ in range(rnd.randrange(30))] for _ in range(2))
        row = [0] * (len(b) + 1)
        for x in a:
            previous = 0
            for j, y in enumerate(b, 1):
                previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
        assert lcs_length(positions(a), len(a), b) == row[-1]


def test_french_near_duplicates_are_caught_where_the_default_rouge_tokenizer_misses_them():
    a = "Rédige une réclamation polie à ton opérateur téléphonique"
    b = "Rédige une réclamation polie à ton fournisseur d’électricité"
    pool = SimilarityPool()
    pool.add("fr-a", a)
    score, closest = pool.closest(b, 0.7)
    assert closest == "fr-a" and score == pytest.approx(12 / 17)
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    assert rouge_scorer.RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure < 0.7  # "r dige", "t l phonique": missed
    assert pool.closest("Explique la laïcité à un enfant", 0.7)[0] < 0.7
    assert blacklisted("Décris cette Image en détail", ("image",)) == "image"
    assert blacklisted("Imagine une histoire", ("image",)) is None
    assert blacklisted("Va sur le site de la mairie", ("va sur",)) == "va sur"


def test_generation_filters_retries_and_counts(tmp_path):
    pack = load_pack("fr")
    seed = pack.seeds[0]
    special = "\n\n".join([
        pack.block(3, "Explique avec tes propres mots ce qu'est une boulangerie de quartier.", "", "Une boulangerie de quartier vend du pain frais, des viennoiseries et des gâteaux aux habitants des rues voisines."),
        pack.block(4, seed.instruction, seed.input, seed.output),  # a seed copied: too similar
        pack.block(5, "Décris l'image ci-dessous en quelques phrases.", "", "On y voit une grande place pavée entourée de cafés et de platanes."),
        pack.block(6, "Explique avec tes propres mots pourquoi les marchés du dimanche sont si populaires.", "",
                   "Sunday markets are popular because people have time to shop slowly and meet their neighbours."),
    ])

    def script(rid, attempt, body):
        if rid == "fr-000000":
            return Reply(content=special)
        if rid == "de-000000":  # an HTTP error, a garbage body, a dropped connection, then the answer
            return [Reply(status=503), Reply(garbage=True), Reply(close=True), None][attempt - 1]
        if rid == "fr-000001":
            return Reply(content="Désolé, je ne peux pas faire cela.")

    with FakeTeacher(script, seed_examples=2, new_tasks=3) as teacher:
        stats = generate(config(tmp_path, teacher.url), progress=False)
    assert teacher.calls["de-000000"] == 4 and max(teacher.answered.values()) == 1
    fr, de = stats["languages"]["fr"], stats["languages"]["de"]
    assert fr["dropped"] == {"blacklisted": 1, "output_wrong_language": 1, "too_similar": 1} and fr["unparsable_answers"] == 1
    for s in (fr, de):
        assert s["kept"] == 6 and s["candidates"] == s["kept"] + sum(s["dropped"].values())
    out = tmp_path / "out"
    examples, dropped = lines(out / "examples.jsonl"), lines(out / "dropped.jsonl")
    assert len(examples) == 12 and stats["kept"] == 12
    assert {d["reason"] for d in dropped} == {"blacklisted", "output_wrong_language", "too_similar", "no_task_parsed"}
    first = examples[0]
    assert first["id"] == "fr-000000-0" and [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["meta"]["teacher"] == f"fake at {teacher.url}" and len(first["meta"]["seed_tasks"]) == 2
    assert first["meta"]["language_score"]["instruction"] > 0.9 and first["meta"]["filters"]["rouge_l"]["max"] < 0.7
    copied = next(d for d in dropped if d["reason"] == "too_similar")
    assert copied["filters"]["rouge_l"] == {"max": 1.0, "closest": seed.id}
    assert json.loads((out / "stats.json").read_text())["kept"] == 12


def test_killed_run_resumes_without_sending_a_request_twice(tmp_path):
    with FakeTeacher(delay=0.05, seed_examples=2, new_tasks=3) as teacher:
        whole = config(tmp_path / "whole", teacher.url, examples_per_language=12)
        generate(whole, progress=False)
        teacher.answered.clear()
        cfg = config(tmp_path, teacher.url, examples_per_language=12)
        cfg_file = tmp_path / "instruct.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        child = subprocess.Popen([sys.executable, "-m", "fournil", "instruct", "generate", str(cfg_file)], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        answers = tmp_path / "out" / "answers.jsonl"
        deadline = time.time() + 20
        while time.time() < deadline and (not answers.is_file() or answers.read_text().count("\n") < 3):
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        recorded = {r["id"] for r in lines(answers)}
        assert 3 <= len(recorded) < 8  # stopped part way
        teacher.calls.clear()
        with (tmp_path / "out" / "examples.jsonl").open("a") as f:
            f.write('{"id": "torn')  # a kill in the middle of a line
        stats = generate(load_config(cfg_file), progress=False)
    assert not recorded & set(teacher.calls)  # a recorded answer is never asked for again
    assert stats["this_run"]["requests_sent"] == len(teacher.calls) == stats["answers_on_disk"] - len(recorded)
    for name in ("examples.jsonl", "dropped.jsonl"):  # the same records, in the same order, as one uninterrupted run
        assert lines(tmp_path / "out" / name) == lines(tmp_path / "whole" / "out" / name), name
    # the answers to the same requests are the same (which look-ahead requests were sent depends on timing)
    answers = {r["id"]: r["content"] for r in lines(tmp_path / "out" / "answers.jsonl")}
    whole_answers = {r["id"]: r["content"] for r in lines(tmp_path / "whole" / "out" / "answers.jsonl")}
    assert all(answers[i] == whole_answers[i] for i in answers.keys() & whole_answers.keys())


def test_endpoint_down_or_hanging_is_one_line_naming_it_and_keeps_the_work(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FournilError) as error:
        generate(config(tmp_path / "down", f"http://127.0.0.1:{port}/v1"), progress=False)
    assert f"127.0.0.1:{port}/v1/chat/completions" in str(error.value) and "\n" not in str(error.value)

    def hang_late(rid, attempt, body):  # every request after the first of each language outlasts the timeout
        return Reply(delay=2.0) if int(rid.split("-")[1]) >= 1 else None

    with FakeTeacher(hang_late, seed_examples=2, new_tasks=3) as teacher:
        cfg = config(tmp_path, teacher.url, **{"teacher.timeout_s": 0.3, "teacher.retries": 1})
        with pytest.raises(FournilError, match=r"timed out after 0.3 s.*the 6 examples kept so far"):
            generate(cfg, progress=False)
    assert len(lines(tmp_path / "out" / "examples.jsonl")) == 6  # fr-000000 and de-000000, three each
    with FakeTeacher(seed_examples=2, new_tasks=3) as teacher:
        stats = generate(config(tmp_path, teacher.url), progress=False)
        assert "fr-000000" not in teacher.calls and stats["kept"] == 12
    with pytest.raises(FournilError, match=r"other settings \(teacher.model\)"):
        generate(config(tmp_path, teacher.url, **{"teacher.model": "another"}), progress=False)


def test_config_mistakes_are_one_line_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"output": "o", "languages": ["fr"], "examples_per_language": 0, "tacher": {},
                                    "teacher": {"base_url": "127.0.0.1:8000", "model": "m"}}))
    result = subprocess.run([sys.executable, "-m", "fournil", "instruct", "generate", str(path)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "examples_per_language = 0" in result.stderr and "tacher = {}: unknown field" in result.stderr and "http://" in result.stderr
    path.write_text(yaml.safe_dump({"output": "o", "languages": ["xx"], "examples_per_language": 1, "teacher": {"base_url": "http://h/v1", "model": "m"}}))
    with pytest.raises(FournilError, match="no prompt for language 'xx'"):
        generate(load_config(path), progress=False)


def test_a_local_model_folder_is_a_teacher(baked, tmp_path):
    """The baked mini model (context 128) through fournil's generator: a short prompt, its answer judged and counted."""
    (tmp_path / "seeds.jsonl").write_text(json.dumps({"id": "s1", "instruction": "Dis bonjour.", "input": "", "output": "Bonjour !"}) + "\n")
    pack = yaml.safe_load((ROOT / "src/fournil/instruct/languages/fr.yaml").read_text(encoding="utf-8"))
    (tmp_path / "fr.yaml").write_text(yaml.safe_dump({**pack, "prompt": "{examples}\n\nTâche {first}\n"}, allow_unicode=True))
    cfg = InstructConfig.model_validate({
        "output": str(tmp_path / "out"), "languages": {"fr": {"seeds_file": str(tmp_path / "seeds.jsonl"), "prompt_file": str(tmp_path / "fr.yaml")}},
        "examples_per_language": 1, "max_requests_per_language": 2, "seed_examples": 1, "new_tasks": 1,
        "teacher": {"model_dir": str(baked / "train" / "final"), "max_tokens": 24, "temperature": 0.0, "device": "cpu"}})
    stats = generate(cfg, progress=False)
    fr = stats["languages"]["fr"]
    assert stats["teacher"].startswith("local model") and fr["requests"] == 2 and stats["answers_on_disk"] == 2
    assert fr["kept"] + sum(fr["dropped"].values()) == fr["candidates"] and fr["gave_up"] == (fr["kept"] < 1)


def test_a_recipe_carries_its_instruct_settings_and_sft_reads_its_examples(tmp_path, minimal_recipe_data):
    """`fournil instruct generate RECIPE` makes the same records as the standalone config it stands for
    (languages and seed from the recipe), and sft.sources read the mixed examples file once per language."""
    from fournil.recipe import load_recipe
    from fournil.sft.conversations import read_conversations

    with FakeTeacher(seed_examples=2, new_tasks=3) as teacher:
        recipe = {**minimal_recipe_data, "seed": 5,
                  "instruct": {"output": "si", "examples_per_language": 4, "seed_examples": 2, "new_tasks": 3,
                               "teacher": {"base_url": teacher.url, "model": "fake", "concurrency": 2, "backoff_s": 0.01}},
                  "sft": {"sources": [{"name": f"si-{lang}", "path": "si/examples.jsonl", "lang": lang, "license": "CC0-1.0"} for lang in ("fr", "en")]}}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        with pytest.raises(FournilError, match=r"sft.sources.0.path = 'si/examples.jsonl'.*run `fournil instruct generate RECIPE` first"):
            load_recipe(path)  # the bake needs the data the instruct: section makes
        cfg = load_config(path, ["instruct.examples_per_language=5"])
        assert list(cfg.languages) == ["fr", "en"] and cfg.seed == 5 and cfg.examples_per_language == 5
        assert cfg.resolve(cfg.output) == tmp_path / "si"
        result = subprocess.run([sys.executable, "-m", "fournil", "instruct", "generate", str(path), "--set", "instruct.examples_per_language=5"],
                                cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert result.returncode == 0, result.stderr
        from_recipe = json.loads((tmp_path / "si" / "stats.json").read_text())
        standalone = tmp_path / "instruct.yaml"
        standalone.write_text(yaml.safe_dump({**recipe["instruct"], "output": "alone", "languages": ["fr", "en"], "seed": 5,
                                              "examples_per_language": 5}))
        generate(load_config(standalone), progress=False)
    assert from_recipe["languages"]["fr"]["kept"] == from_recipe["languages"]["en"]["kept"] == 5
    for name in ("examples.jsonl", "dropped.jsonl"):
        assert (tmp_path / "si" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name
    assert load_recipe(path).instruct.output == "si"  # the data is there now
    for lang in ("fr", "en"):
        skipped = Counter()
        found = list(read_conversations(tmp_path / "si" / "examples.jsonl", "auto", skipped, lang))
        assert len(found) == 5 and skipped == {"other_language": 5}
        assert found[0][0]["content"].startswith(ASK[lang])

    del recipe["sft"]
    path.write_text(yaml.safe_dump({**recipe, "instruct": {**recipe["instruct"], "languages": ["fr", "de"]}}))
    with pytest.raises(FournilError, match=r"instruct.languages: 'de' is not among the recipe's languages"):
        load_config(path)
    path.write_text(yaml.safe_dump({k: v for k, v in recipe.items() if k != "instruct"}))
    with pytest.raises(FournilError, match=r"has no instruct: section"):
        load_config(path)
