"""The run folder: manifests, skipping unchanged stages, rerunning changed ones, resuming interrupted ones."""

from __future__ import annotations

import json

import pytest

from fournil import runs
from fournil.errors import FournilError
from fournil.recipe import parse_recipe
from fournil.runs import Stage
from fournil.schema import Figures

CALLS: list[tuple[str, bool]] = []
CRASH_AFTER: dict[str, int] = {}


def declared(ctx) -> str:
    """The values of the recipe fields the stage declares (the only ones it can read), in order."""
    return ":".join(str(v) for v in runs._leaves(ctx.recipe.fingerprint_view(), "").values())


def write_parts(ctx) -> dict:
    """A stage that writes five parts, skipping parts already written (as real stages resume)."""
    CALLS.append((ctx.stage.name, ctx.resuming))
    upstream = sorted((ctx.input(n) / "parts.txt").read_text() for n in ctx.stage.needs)
    for i in range(5):
        part = ctx.out / f"part{i}.txt"
        if part.exists():
            continue
        if CRASH_AFTER.get(ctx.stage.name) == i:
            raise KeyboardInterrupt  # as if the process were killed here
        part.write_text(f"{i}:{declared(ctx)}")
    text = "".join(sorted(p.read_text() for p in ctx.out.glob("part*.txt"))) + "|".join(upstream)
    (ctx.out / "parts.txt").write_text(text)
    return {"parts": 5, "chars": len(text)}


FAKE = (
    Stage("a", ("tokenizer",), (), f"{__name__}:write_parts", "first"),
    Stage("b", ("train.max_steps", "train.log_every"), ("a",), f"{__name__}:write_parts", "second", adjustable=("train.log_every",)),
    Stage("c", ("evaluate",), ("b",), f"{__name__}:write_parts", "third"),
)


@pytest.fixture
def fake_stages(monkeypatch):
    monkeypatch.setattr(runs, "STAGES", FAKE)
    CALLS.clear()
    CRASH_AFTER.clear()


def recipe(data, tmp_path, **train):
    data = {**data, "train": train} if train else data
    return parse_recipe(data, tmp_path)


def test_manifest_records_fingerprint_outputs_figures_versions(fake_stages, minimal_recipe_data, tmp_path):
    run_dir = tmp_path / "run"
    runs.run_all(recipe(minimal_recipe_data, tmp_path), run_dir, log=lambda m: None)
    manifest = json.loads((run_dir / "b" / "manifest.json").read_text())
    assert manifest["stage"] == "b" and len(manifest["fingerprint"]) == 64
    assert manifest["figures"] == {"parts": 5, "chars": len((run_dir / "b" / "parts.txt").read_text())}
    assert set(manifest["outputs"]) == {"parts.txt"} | {f"part{i}.txt" for i in range(5)}
    assert manifest["outputs"]["part0.txt"]["bytes"] == len("0:1000:10")
    assert manifest["inputs"]["fields"] == {"train.max_steps": 1000, "train.log_every": 10}
    assert manifest["inputs"]["upstream"] == {"a": json.loads((run_dir / "a" / "manifest.json").read_text())["fingerprint"]}
    assert manifest["versions"]["python"] and manifest["versions"]["torch"]
    assert manifest["wall_seconds"] >= 0


def test_second_run_does_no_work(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    assert [c[0] for c in CALLS] == ["a", "b", "c"]
    messages = []
    runs.run_all(r, tmp_path / "run", log=messages.append)
    assert [c[0] for c in CALLS] == ["a", "b", "c"], "nothing ran the second time"
    assert messages == ["[a] up to date, skipped", "[b] up to date, skipped", "[c] up to date, skipped"]


def test_changed_setting_reruns_that_stage_and_later_ones(fake_stages, minimal_recipe_data, tmp_path):
    runs.run_all(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", log=lambda m: None)
    CALLS.clear()
    runs.run_all(recipe(minimal_recipe_data, tmp_path, max_steps=7), tmp_path / "run", log=lambda m: None)
    assert [c[0] for c in CALLS] == ["b", "c"], "a does not read train.max_steps; b does, and c reads b"
    assert (tmp_path / "run" / "b" / "part0.txt").read_text() == "0:7:10"


def test_interrupted_stage_resumes_to_the_same_result(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "clean", log=lambda m: None)
    CRASH_AFTER["b"] = 3
    with pytest.raises(KeyboardInterrupt):
        runs.run_all(r, tmp_path / "run", log=lambda m: None)
    assert not (tmp_path / "run" / "b" / "manifest.json").exists()
    assert (tmp_path / "run" / "b" / "part2.txt").exists()
    CRASH_AFTER.clear()
    CALLS.clear()
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    assert CALLS == [("b", True), ("c", False)], "a was skipped, b resumed, c ran fresh"
    for stage in "abc":
        clean = json.loads((tmp_path / "clean" / stage / "manifest.json").read_text())
        resumed = json.loads((tmp_path / "run" / stage / "manifest.json").read_text())
        assert resumed["outputs"] == clean["outputs"] and resumed["fingerprint"] == clean["fingerprint"]


def test_an_interrupted_stage_of_an_older_fournil_resumes(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    CRASH_AFTER["b"] = 3
    with pytest.raises(KeyboardInterrupt):
        runs.run_all(r, tmp_path / "run", log=lambda m: None)
    CRASH_AFTER.clear()
    (tmp_path / "run" / "b" / runs.STARTED).write_text(runs.fingerprint(r, tmp_path / "run", FAKE[1]))  # its format then
    CALLS.clear()
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    assert CALLS == [("b", True), ("c", False)]


def test_stale_work_of_another_fingerprint_is_discarded(fake_stages, minimal_recipe_data, tmp_path):
    CRASH_AFTER["b"] = 2
    with pytest.raises(KeyboardInterrupt):
        runs.run_all(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", log=lambda m: None)
    CRASH_AFTER.clear()
    CALLS.clear()
    runs.run_all(recipe(minimal_recipe_data, tmp_path, max_steps=9), tmp_path / "run", log=lambda m: None)
    assert ("b", False) in CALLS
    assert all(p.read_text().split(":")[1] == "9" for p in (tmp_path / "run" / "b").glob("part*.txt"))


def test_an_adjustable_setting_resumes_the_work_instead_of_discarding_it(fake_stages, minimal_recipe_data, tmp_path):
    runs.run_all(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", log=lambda m: None)
    (tmp_path / "run" / "b" / "part4.txt").unlink()  # as if b had more to do
    CALLS.clear()
    messages = []
    runs.run_all(recipe(minimal_recipe_data, tmp_path, log_every=3), tmp_path / "run", log=messages.append)
    assert CALLS == [("b", True), ("c", False)], "b resumes its own work; c reads b, whose fingerprint changed"
    assert "[b] resuming: second" in messages and not any(m.startswith("[b]") and "discarded" in m for m in messages)
    manifest = json.loads((tmp_path / "run" / "b" / "manifest.json").read_text())
    assert manifest["inputs"]["fields"]["train.log_every"] == 3 and manifest["resumed"]
    assert (tmp_path / "run" / "b" / "part4.txt").read_text() == "4:1000:3"
    CALLS.clear()
    runs.run_all(recipe(minimal_recipe_data, tmp_path, log_every=3), tmp_path / "run", log=lambda m: None)
    assert CALLS == [], "and then it is current"
    runs.run_all(recipe(minimal_recipe_data, tmp_path, log_every=3, max_steps=8), tmp_path / "run", log=messages.append)
    assert CALLS == [("b", False), ("c", False)]
    assert f"[b] its settings or inputs changed: the earlier work in {tmp_path / 'run' / 'b'} is discarded" in messages


def test_kept_work_of_a_finished_stage_resumed_for_an_adjustable_change_is_checked_first(fake_stages, minimal_recipe_data,
                                                                                          tmp_path, monkeypatch):
    kept = Stage("b", FAKE[1].fields, FAKE[1].needs, FAKE[1].entry, "second", adjustable=FAKE[1].adjustable, kept="part[0-9].txt")
    monkeypatch.setattr(runs, "STAGES", (FAKE[0], kept))
    runs.run_all(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", log=lambda m: None)
    (tmp_path / "run" / "b" / "part2.txt").write_text("2:1000:1X")  # same size, other bytes
    CALLS.clear()
    with pytest.raises(FournilError, match=r"b/part2.txt does not match the hash the b stage recorded: it is damaged; "
                                           r"rerun that stage: `fournil b RECIPE --force`"):
        runs.run_all(recipe(minimal_recipe_data, tmp_path, log_every=3), tmp_path / "run", log=lambda m: None)
    assert CALLS == [] and (tmp_path / "run" / "b" / "manifest.json").is_file(), "refused before b ran"
    (tmp_path / "run" / "b" / "part2.txt").write_text("2:1000:10")
    (tmp_path / "run" / "b" / "parts.txt").write_text("not kept: the stage writes it again")
    runs.run_all(recipe(minimal_recipe_data, tmp_path, log_every=3), tmp_path / "run", log=lambda m: None)
    assert CALLS == [("b", True)]


def test_costly_work_of_another_lineage_is_kept_until_forced_and_the_error_says_what_changed(fake_stages, minimal_recipe_data,
                                                                                            tmp_path, monkeypatch):
    costly = Stage("b", FAKE[1].fields, FAKE[1].needs, FAKE[1].entry, "second", adjustable=FAKE[1].adjustable, costly="part*.txt")
    monkeypatch.setattr(runs, "STAGES", (FAKE[0], costly))
    runs.run_all(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", log=lambda m: None)
    with pytest.raises(FournilError, match=r"b holds part\*.txt made with other settings or inputs \(train.max_steps: 1000 → 7\); "
                                           r"to discard it and start afresh, run `fournil b RECIPE --force`"):
        runs.run_all(recipe(minimal_recipe_data, tmp_path, max_steps=7), tmp_path / "run", log=lambda m: None)
    assert (tmp_path / "run" / "b" / "part0.txt").read_text() == "0:1000:10"
    runs.run_all(recipe(minimal_recipe_data, tmp_path, max_steps=7), tmp_path / "run", until="a", log=lambda m: None)  # b not run
    other_a = {**minimal_recipe_data, "tokenizer": {**minimal_recipe_data.get("tokenizer", {}), "vocab_size": 16000}}
    CALLS.clear()
    for until in (None, "a"):  # rerunning a alone would also leave b's work without the a it was made from
        with pytest.raises(FournilError, match=r"\(the a stage's output, as tokenizer.vocab_size: 32000 → 16000 there\)"):
            runs.run_all(recipe(other_a, tmp_path), tmp_path / "run", until=until, log=lambda m: None)
    assert CALLS == [], "refused before a ran: a's work is as it was"
    with pytest.raises(FournilError, match=r"\(the a stage's output\)"):  # a alone, then b: its cause is gone from a's folder
        runs.run_stage(recipe(other_a, tmp_path), tmp_path / "run", "a", log=lambda m: None)
        runs.run_stage(recipe(other_a, tmp_path), tmp_path / "run", "b", log=lambda m: None)
    runs.run_stage(recipe(other_a, tmp_path), tmp_path / "run", "b", force=True, log=lambda m: None)
    assert "0:16000" in (tmp_path / "run" / "b" / "parts.txt").read_text(), "b was made from the new a"


def test_force_reruns(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    CALLS.clear()
    runs.run_stage(r, tmp_path / "run", "b", force=True, log=lambda m: None)
    assert CALLS == [("b", False)]


def test_stage_alone_needs_earlier_stages(fake_stages, minimal_recipe_data, tmp_path):
    with pytest.raises(FournilError, match=r"has no manifest: run `fournil a RECIPE` \(or `fournil run RECIPE`\) first"):
        runs.run_stage(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", "b", log=lambda m: None)


def test_corrupt_manifest_is_a_clear_error(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    (tmp_path / "run" / "a" / "manifest.json").write_text("{trunc")
    with pytest.raises(FournilError, match=r"manifest.json is corrupt: delete .* and run that stage again"):
        runs.run_stage(r, tmp_path / "run", "b", log=lambda m: None)


def test_unknown_stage(fake_stages):
    with pytest.raises(FournilError, match=r"unknown stage 'z'; stages are a, b, c"):
        runs.get_stage("z")


def test_real_stage_order_reads_only_earlier_stages():
    seen = set()
    for stage in runs.STAGES:
        assert set(stage.needs) <= seen, f"{stage.name} reads a later stage"
        seen.add(stage.name)
    assert runs.STAGE_NAMES == ("corpus", "tokenizer", "mixture", "train", "sft", "evaluate", "release")


def test_a_stage_sees_only_the_recipe_fields_it_declares(minimal_recipe_data, tmp_path):
    from fournil.recipe_view import UndeclaredField

    r = recipe({**minimal_recipe_data, "description": "a bake"}, tmp_path, max_steps=7)
    ctx = runs.StageContext(recipe=r, run_dir=tmp_path, stage=FAKE[1], fingerprint="f")  # declares train.max_steps, train.log_every
    assert ctx.recipe.train.max_steps == 7 and ctx.recipe.name == "mini" and ctx.recipe.resolve("x") == tmp_path / "x"
    for read in (lambda v: v.description, lambda v: v.train.lr, lambda v: v.tokenizer, lambda v: v.fingerprint_view()["seed"]):
        with pytest.raises((UndeclaredField, KeyError)):
            read(ctx.recipe)
    with pytest.raises(UndeclaredField, match=r"the b stage reads recipe field train.lr without declaring it"):
        ctx.recipe.train.lr
    with pytest.raises(UndeclaredField):
        ctx.recipe.train.max_steps = 8
    assert ctx.recipe.fingerprint_view() == {"train": {"max_steps": 7, "log_every": 10}}
    assert ctx.recipe.model_dump(mode="json") == {"train": {"max_steps": 7, "log_every": 10}}


def test_a_field_read_by_the_real_release_stage_is_declared_so_its_change_reruns_release(minimal_recipe_data, tmp_path):
    release = runs.get_stage("release")
    upstream = dict.fromkeys(release.needs, "fp")
    before = runs.stage_inputs(recipe(minimal_recipe_data, tmp_path), tmp_path, release, upstream)
    after = runs.stage_inputs(recipe({**minimal_recipe_data, "description": "new words"}, tmp_path), tmp_path, release, upstream)
    assert before["fields"]["description"] == "" and after["fields"]["description"] == "new words"


class PartsFigures(Figures):
    parts: int | None = None
    chars: int | None = None


def test_figures_are_checked_against_the_stage_model(fake_stages, minimal_recipe_data, tmp_path, monkeypatch):
    typed = Stage("a", FAKE[0].fields, (), FAKE[0].entry, "first", figures=f"{__name__}:PartsFigures")
    monkeypatch.setattr(runs, "STAGES", (typed,))
    manifest = runs.run_stage(recipe(minimal_recipe_data, tmp_path), tmp_path / "run", "a", log=lambda m: None)
    assert manifest["figures"] == {"parts": 5, "chars": manifest["figures"]["chars"]}
    assert runs.read_figures(typed, manifest).parts == 5
    with pytest.raises(RuntimeError, match=r"the a stage returns figures that PartsFigures does not declare: extra"):
        runs.recorded_figures(typed, {"parts": 5, "extra": 1})
    with pytest.raises(ValueError, match="parts"):
        runs.recorded_figures(typed, {"parts": "five"})
    assert runs.recorded_figures(typed, PartsFigures(parts=3)) == {"parts": 3}


def test_every_real_stage_has_a_figures_model():
    for stage in runs.STAGES:
        assert issubclass(runs.figures_model(stage), Figures), stage.name


def _damage(path, offset: int = 0) -> None:
    """Flip one byte, keeping the size: only the hash can tell."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_output_of_a_skipped_stage_is_an_error_naming_the_file_and_the_stage(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    _damage(tmp_path / "run" / "c" / "part3.txt")
    with pytest.raises(FournilError, match=r"c/part3.txt does not match the hash the c stage recorded: it is damaged; "
                                           r"rerun that stage: `fournil c RECIPE --force`$"):
        runs.run_all(r, tmp_path / "run", log=lambda m: None)
    (tmp_path / "run" / "c" / "part3.txt").unlink()
    with pytest.raises(FournilError, match=r"c/part3.txt is missing, though the c stage wrote it"):
        runs.run_stage(r, tmp_path / "run", "c", log=lambda m: None)


def test_force_checks_what_the_stage_reads_before_it_discards_its_work(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    (tmp_path / "run" / "a" / "parts.txt").write_text("other")
    CALLS.clear()
    with pytest.raises(FournilError, match=r"a/parts.txt has 5 bytes, the a stage recorded \d+: it is damaged; rerun that stage: `fournil a"):
        runs.run_stage(r, tmp_path / "run", "b", force=True, log=lambda m: None)
    assert CALLS == [] and (tmp_path / "run" / "b" / "manifest.json").is_file() and len(list((tmp_path / "run" / "b").glob("part[0-9].txt"))) == 5


def test_outputs_recorded_by_an_older_fournil_are_checked_by_their_sha256(fake_stages, minimal_recipe_data, tmp_path):
    r = recipe(minimal_recipe_data, tmp_path)
    runs.run_all(r, tmp_path / "run", log=lambda m: None)
    path = tmp_path / "run" / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    for name, entry in manifest["outputs"].items():
        manifest["outputs"][name] = {"bytes": entry["bytes"], "sha256": runs.file_sha256(tmp_path / "run" / "a" / name)}
    path.write_text(json.dumps(manifest))
    runs.run_stage(r, tmp_path / "run", "b", log=lambda m: None)  # intact: fine
    _damage(tmp_path / "run" / "a" / "part0.txt")
    with pytest.raises(FournilError, match=r"a/part0.txt does not match the hash the a stage recorded"):
        runs.run_stage(r, tmp_path / "run", "b", log=lambda m: None)


def fail_with(error: OSError):
    def stage(ctx):
        raise error
    return stage


def test_disk_faults_are_one_line_errors(fake_stages, minimal_recipe_data, tmp_path, monkeypatch):
    import errno
    import subprocess
    import sys
    from pathlib import Path

    r = recipe(minimal_recipe_data, tmp_path)
    (tmp_path / "afile").write_text("")
    for name in ("a", "b"):
        with pytest.raises(FournilError, match=r"afile is a file, not a folder; give another --runs-dir or move the file away$"):
            runs.run_stage(r, tmp_path / "afile" / "run", name, log=lambda m: None)
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "a" / "part2.txt"))
    monkeypatch.setattr(__import__(__name__), "write_parts", fail_with(full))
    with pytest.raises(FournilError, match=r"a/part2.txt: No space left on device; free some space, then run the same command again"):
        runs.run_stage(r, tmp_path / "run", "a", log=lambda m: None)
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system", str(self))))
    with pytest.raises(FournilError, match=r"run/.fournil-write-test: Read-only file system; give a --runs-dir on a writable disk, then run the same"):
        runs.run_stage(r, tmp_path / "run", "a", log=lambda m: None)
    monkeypatch.undo()
    mini = Path(__file__).parent / "recipes" / "mini.yaml"
    result = subprocess.run([sys.executable, "-m", "fournil", "corpus", str(mini), "--runs-dir", str(tmp_path / "afile")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: {tmp_path / 'afile'} is a file, not a folder; give another --runs-dir or move the file away"]


def test_instruction_data_rewritten_in_place_reruns_sft_alone(minimal_recipe_data, tmp_path):
    """`fournil instruct generate` rewrites its examples in place: the sft stage's fingerprint holds their content
    hash, not only their path, so new data retunes the model (and what follows it) without retraining."""
    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"messages": [{"role": "user", "content": "Bonjour"}, {"role": "assistant", "content": "Salut"}]}) + "\n")
    recipe = parse_recipe({**minimal_recipe_data, "sft": {"sources": [{"name": "self-instruct", "path": str(examples), "lang": "fr", "license": "CC-BY-4.0"}]}}, tmp_path)
    before = runs.planned_fingerprints(recipe)
    assert runs.planned_fingerprints(recipe) == before
    with examples.open("a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "Merci"}, {"role": "assistant", "content": "De rien"}]}) + "\n")
    after = runs.planned_fingerprints(recipe)
    assert [s for s in runs.STAGE_NAMES if after[s] != before[s]] == ["sft", "evaluate", "release"]


def test_a_model_folder_rewritten_under_sft_init_from_reruns_sft_alone(minimal_recipe_data, tmp_path):
    """The folder `sft.init_from` names is fingerprinted by its files' listing: a new checkpoint saved over it retunes."""
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Bonjour"}, {"role": "assistant", "content": "Salut"}]}) + "\n")
    recipe = parse_recipe({**minimal_recipe_data, "sft": {"init_from": str(folder), "sources": [
        {"name": "chat", "path": str(data), "lang": "fr", "license": "CC-BY-4.0"}]}}, tmp_path)
    before = runs.planned_fingerprints(recipe)
    assert runs.planned_fingerprints(recipe) == before
    (folder / "model.safetensors").write_bytes(b"new weights")
    after = runs.planned_fingerprints(recipe)
    assert [s for s in runs.STAGE_NAMES if after[s] != before[s]] == ["sft", "evaluate", "release"]


def test_raw_text_and_evaluation_sets_rewritten_under_the_same_paths_rerun_the_stages_that_read_them(minimal_recipe_data, tmp_path):
    """A corpus source is fingerprinted by its files' listing (path, size, mtime), a parallel file and an
    evaluation set by their content: new data under an old path is not mistaken for the work already done."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("Le chat dort sur le tapis.\n")
    pairs, evalset = tmp_path / "pairs.tsv", tmp_path / "eval.jsonl"
    pairs.write_text("Bonjour\tHello\n")
    evalset.write_text(json.dumps({"text": "une question"}) + "\n")
    recipe = parse_recipe({**minimal_recipe_data, "sources": [*minimal_recipe_data["sources"],
                                                              {"name": "fr-raw", "path": str(raw), "lang": "fr", "license": "CC0-1.0"}],
                           "parallel": [{"name": "pairs", "path": str(pairs), "langs": ["fr", "en"], "license": "CC0-1.0"}],
                           "corpus": {"decontaminate": [str(evalset)]}}, tmp_path)

    def changed(before: dict) -> list[str]:
        after = runs.planned_fingerprints(recipe)
        return [s for s in runs.STAGE_NAMES if after[s] != before[s]]

    before = runs.planned_fingerprints(recipe)
    assert changed(before) == []
    (raw / "b.txt").write_text("Un autre document.\n")  # a file added to a source folder
    assert changed(before) == list(runs.STAGE_NAMES)
    before = runs.planned_fingerprints(recipe)
    pairs.write_text("Merci\tThanks\n")
    assert changed(before) == ["tokenizer", "mixture", "train", "sft", "evaluate", "release"]
    before = runs.planned_fingerprints(recipe)
    evalset.write_text(json.dumps({"text": "une autre question"}) + "\n")
    assert changed(before) == list(runs.STAGE_NAMES)
