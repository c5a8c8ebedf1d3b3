"""`fournil sweep`: points share every stage they do not change (counted from the manifests), a killed
sweep resumes, the comparison is right and renders in headless Chromium, bad input fails first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chromium import CHROMIUM, SKIP_REASON, open_page
from fournil.errors import FournilError
from fournil.runs import STAGE_NAMES, check_outputs, read_manifest, run_all
from fournil.sweep import config, execute, report, results
from fournil.sweep.points import expand
from fournil.sweep.results import settings
from fournil.sweep.share import link_stage, own_copies

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "tests" / "recipes" / "sweep-mini.yaml"
TINY = ["--proxy", "--proxy-size", "tiny"]


def make(runs: Path, *vary: str, seeds: int | None = None, until: str | None = None, overrides: list[str] = (), path: Path = RECIPE):
    cfg, base = config.build(path, list(vary), seeds, False, "tiny", list(overrides), None, until)
    return expand(cfg, base, runs)


def manifests(sweep, stage: str) -> list[os.stat_result]:
    return [(sweep.folder / p.name / stage / "manifest.json").stat() for p in sweep.points]


def fournil(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fournil", *args], capture_output=True, text=True, **options)


def test_a_ratio_sweep_curates_and_tokenises_once(tmp_path):
    sweep = make(tmp_path, "languages.fr=0.1,0.3,0.5,0.7,0.9", until="mixture")
    assert [p.recipe.languages for p in sweep.points][:2] == [{"fr": 0.1, "en": 0.9}, {"fr": 0.3, "en": 0.7}]
    assert execute.run(sweep, tmp_path, 1, lambda message: None) == {}
    runs = {stage: len({(s.st_dev, s.st_ino) for s in manifests(sweep, stage)}) for stage in ("corpus", "tokenizer", "mixture")}
    assert runs == {"corpus": 1, "tokenizer": 1, "mixture": 5}  # distinct manifest files: the stage ran that many times
    first = sweep.points[0].name
    for p in sweep.points:  # every point's folder is whole and checks out against its manifests' hashes
        folder = sweep.folder / p.name
        assert read_manifest(folder / "corpus")["recipe"] == first
        check_outputs(folder / "corpus")
        check_outputs(folder / "tokenizer")
        assert read_manifest(folder / "mixture")["recipe"] == p.name
    plans = [json.loads((sweep.folder / p.name / "mixture" / "plan.json").read_text()) for p in sweep.points]
    assert plans[0] != plans[-1]  # the mixture did read the shares
    encoded = [read_manifest(sweep.folder / p.name / "mixture")["figures"]["shards_encoded"] for p in sweep.points]
    assert encoded == [plans[0]["groups"].__len__(), 0, 0, 0, 0]  # the shards once, five plans
    data = results.collect(sweep, {})
    assert data["stage_runs"]["made"]["corpus"] == 1 and data["stage_runs"]["made"]["mixture"] == 5
    assert data["stage_runs"]["shards_encoded"] == {"planned": 1, "made": 1}
    assert data["stage_runs"]["planned"] == {"corpus": 1, "tokenizer": 1, "mixture": 5, **dict.fromkeys(STAGE_NAMES[3:], 0)}


def test_a_mixture_shared_by_seeds_counts_its_shards_once(tmp_path):
    sweep = make(tmp_path, "languages.fr=0.3", seeds=2, until="train", overrides=["train.max_steps=1"])
    assert execute.run(sweep, tmp_path, 1, lambda message: None) == {}
    assert len({(s.st_dev, s.st_ino) for s in manifests(sweep, "mixture")}) == 1  # both seeds hold the one mixture
    assert read_manifest(sweep.folder / sweep.points[1].name / "mixture")["figures"]["shards_encoded"] > 0
    assert results.collect(sweep, {})["stage_runs"]["shards_encoded"] == {"planned": 1, "made": 1}


def test_a_tokenizer_share_sweep_retokenises_but_curates_once_and_a_failed_point_does_not_stop_the_others(tmp_path):
    sweep = make(tmp_path, "tokenizer.shares={fr: 0.7, en: 0.3},{fr: 0.5, de: 0.5},{fr: 0.3, en: 0.7}", until="tokenizer")
    errors = execute.run(sweep, tmp_path, 1, lambda message: None)
    bad = sweep.points[1].name
    assert list(errors) == [bad] and "tokenizer.shares names ['de']" in errors[bad]
    good = [p for p in sweep.points if p.name != bad]
    assert len({(s.st_dev, s.st_ino) for s in manifests(sweep, "corpus")}) == 1
    tokenizers = [read_manifest(sweep.folder / p.name / "tokenizer")["figures"]["sha256"] for p in good]
    assert len(set(tokenizers)) == 2
    data = results.collect(sweep, errors)
    assert [p["status"] for p in data["points"]] == ["finished", "failed", "finished"]
    assert data["points"][1]["error"] == errors[bad]


def test_a_share_sweep_encodes_once_and_bakes_the_bytes_of_its_points_run_by_hand(tmp_path):
    sweep = make(tmp_path, "languages.fr=0.3,0.7", until="evaluate", overrides=["train.max_steps=2"])
    assert sweep.runs_per_stage()["mixture"] == 2 and sweep.kept_runs("mixture") == 1
    lines = [line.split("\t") for line in execute.commands(sweep, tmp_path)]  # with --jobs, the second waits for the first's shards
    assert [(n, after, c.rsplit(" ", 3)[1:]) for n, after, c in lines] == [
        ("1", "-", ["fr-0.3", "--until", "tokenizer"]), ("2", "1", ["fr-0.3", "--until", "mixture"]),
        ("3", "2", ["fr-0.3", "--until", "evaluate"]), ("4", "1,2", ["fr-0.7", "--until", "evaluate"])]
    assert execute.run(sweep, tmp_path, 1, lambda message: None) == {}
    first, second = (sweep.folder / p.name for p in sweep.points)
    figures = [read_manifest(folder / "mixture")["figures"] for folder in (first, second)]
    groups = figures[0]["groups"]
    assert [(f["shards_encoded"], f["shards_kept"]) for f in figures] == [(groups, 0), (0, groups)] and groups == 5
    files = [path for folder in (first, second) for path in (folder / "mixture" / "shards").rglob("*") if path.is_file()]
    assert len(files) == 2 * 3 * groups and len({(f.stat().st_dev, f.stat().st_ino) for f in files}) == 3 * groups  # on disk once
    check_outputs(second / "mixture")
    assert read_manifest(second / "mixture")["figures"]["per_language"]["fr"]["share"] == pytest.approx(0.7, abs=1e-3)

    by_hand = tmp_path / "by-hand"  # the lent point baked alone, from nothing, gives the same bytes
    run_all(sweep.points[1].recipe, by_hand, until="evaluate", log=lambda message: None)
    assert read_manifest(by_hand / "mixture")["figures"]["shards_encoded"] == groups
    for stage, same in (("mixture", lambda f: not f.startswith("logs/")), ("train", lambda f: f.startswith("final/"))):
        mine, alone = (read_manifest(folder / stage)["outputs"] for folder in (second, by_hand))
        assert {f: v for f, v in mine.items() if same(f)} == {f: v for f, v in alone.items() if same(f)}
        assert len([f for f in mine if same(f)]) > (3 * groups if stage == "mixture" else 1)
    rows = [[json.loads(line) for line in (folder / "train" / "log.jsonl").read_text().splitlines()] for folder in (second, by_hand)]
    losses = [[row["loss"] for row in mine if "loss" in row] for mine in rows]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    scores = [{lang: (f["bits_per_byte"], f["unigram_bits_per_byte"]) for lang, f in read_manifest(folder / "evaluate")["figures"]
               ["per_language"].items()} for folder in (second, by_hand)]  # the figures less their timings
    assert scores[0] == scores[1] and scores[0]["fr"][0] > 0 and set(scores[0]) == {"fr", "en"}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A 3-point sweep killed (-9) once its first point finished, then run again with 2 jobs."""
    runs = tmp_path_factory.mktemp("sweep")
    args = ["sweep", str(RECIPE), *TINY, "--vary", "languages.fr=0.2,0.5,0.8", "--until", "evaluate", "--runs-dir", str(runs)]
    folder = runs / "sweep-mini-proxy-tiny-fr"
    with open(runs / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "fournil", *args], stdout=log, stderr=log, start_new_session=True)
    done = folder / "fr-0.2" / "evaluate" / "manifest.json"
    deadline = time.time() + 120
    while not done.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert done.is_file(), (runs / "first.log").read_text()[-3000:]
    before = {stage: (folder / "fr-0.2" / stage / "manifest.json").stat().st_mtime_ns for stage in STAGE_NAMES[:STAGE_NAMES.index("evaluate") + 1]}
    unfinished = [p for p in ("fr-0.5", "fr-0.8") if not (folder / p / "evaluate" / "manifest.json").is_file()]
    second = fournil(*args, "--jobs", "2")
    assert second.returncode == 0, second.stderr[-3000:]
    return folder, before, unfinished, second


def test_a_killed_sweep_skips_finished_points_and_resumes(resumed):
    folder, before, unfinished, second = resumed
    assert unfinished == ["fr-0.5", "fr-0.8"]  # the kill came before the other points finished
    after = {stage: (folder / "fr-0.2" / stage / "manifest.json").stat().st_mtime_ns for stage in before}
    assert after == before  # nothing of the finished point ran again
    log = (folder / "logs" / "fr-0.2.log").read_text() if (folder / "logs" / "fr-0.2.log").is_file() else ""
    assert "running" not in log
    data = json.loads((folder / "sweep.json").read_text())
    assert [p["status"] for p in data["points"]] == ["finished"] * 3
    assert data["stage_runs"]["made"] == {"corpus": 1, "tokenizer": 1, "mixture": 3, "train": 3, "sft": 3, "evaluate": 3, "release": 0}


def test_the_comparison_reads_every_point_and_marks_the_pareto_front(resumed):
    folder, _, _, second = resumed
    data = json.loads((folder / "sweep.json").read_text())
    assert data["fields"] == ["languages.fr"] and data["languages"] == ["fr", "en"]
    for point, setting in zip(data["points"], data["settings"]):
        evaluate = read_manifest(folder / point["name"] / "evaluate")["figures"]
        train = read_manifest(folder / point["name"] / "train")["figures"]
        for lang in ("fr", "en"):
            assert point["per_language"][lang]["bits_per_byte"] == evaluate["per_language"][lang]["bits_per_byte"] > 0
            assert setting["bits_per_byte"][lang] == {"mean": evaluate["per_language"][lang]["bits_per_byte"], "std": 0.0, "n": 1}
        assert point["tokens"] == train["tokens"] > 0 and point["energy_kwh"] == train["energy"]["kwh"]
        assert set(point["tasks"]) == {"minimal_pairs_fr", "minimal_pairs_en"}
        walls = [read_manifest(folder / point["name"] / s)["wall_seconds"] for s in STAGE_NAMES[:-1]]
        assert point["wall_seconds"] == pytest.approx(sum(walls), abs=0.01)
    means = [{lang: s["bits_per_byte"][lang]["mean"] for lang in ("fr", "en")} for s in data["settings"]]
    for s, mine in zip(data["settings"], means):
        dominated = any(all(o[k] <= mine[k] for k in mine) and o != mine for o in means)
        assert s["pareto"] is not dominated
    assert data["plots"] == {"bits per byte against languages.fr": True, "task scores against languages.fr": True,
                             "cost against languages.fr": True, "Pareto front": True}
    md = (folder / "sweep.md").read_text()
    for p in data["points"]:
        fr = p["per_language"]["fr"]["bits_per_byte"]
        assert f"| {p['values']['languages.fr']} | 1/1 | {fr:.3f} |" in md
    assert "| corpus | 1 | 1 | 3 |" in md
    assert "comparison: " in second.stdout


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_the_comparison_renders_in_headless_chromium_with_every_plot(resumed, tmp_path):
    folder = resumed[0]
    page, errors, png = open_page(folder / "sweep.html", tmp_path / "profile")
    drawn = [name for name, ok in json.loads((folder / "sweep.json").read_text())["plots"].items() if ok]
    assert errors == [] and page["broken"] == []
    assert page["alts"] == drawn and len(drawn) == 4
    assert page["headings"] == ["Results", "Plots", "Stages"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_seeds_give_error_bars_and_the_front_is_over_setting_means():
    def point(name, fr, seed, bpb):
        return {"name": name, "values": {"languages.fr": fr, "train.seed": seed}, "status": "finished",
                "per_language": {lang: {"bits_per_byte": v} for lang, v in bpb.items()}, "tasks": {},
                "tokens": 100, "wall_seconds": 2.0, "energy_kwh": None}
    points = [point("a1", 0.2, 1, {"fr": 3.0, "en": 2.0}), point("a2", 0.2, 2, {"fr": 3.2, "en": 2.2}),
              point("b1", 0.8, 1, {"fr": 2.0, "en": 3.0}), point("b2", 0.8, 2, {"fr": 2.2, "en": 3.0}),
              point("c1", 0.5, 1, {"fr": 3.5, "en": 3.5}), point("c2", 0.5, 2, {"fr": 3.5, "en": 3.5})]
    made = settings(points, ["fr", "en"])
    assert [s["points"] for s in made] == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"]]
    assert made[0]["bits_per_byte"]["fr"]["mean"] == pytest.approx(3.1)
    assert made[0]["bits_per_byte"]["fr"]["std"] == pytest.approx(0.1414, abs=1e-4) and made[0]["bits_per_byte"]["fr"]["n"] == 2
    assert [s["pareto"] for s in made] == [True, True, False]  # c is worse than a in both languages
    assert made[0]["energy_kwh"] is None and made[0]["tokens"] == {"mean": 100, "std": 0.0, "n": 2}


def test_a_grid_with_seeds_plots_each_field_with_error_bars(tmp_path):
    grid = [(alibi, norm, seed) for alibi in (False, True) for norm in (False, True) for seed in (1, 2)]
    points = [{"name": f"p{k}", "values": {"model.overrides.alibi": a, "model.overrides.embedding_norm": n, "train.seed": s},
               "status": "finished", "error": None,
               "per_language": {"fr": {"bits_per_byte": 3.0 - 0.2 * a + 0.01 * s}, "en": {"bits_per_byte": 2.5 + 0.1 * n - 0.01 * s}},
               "tasks": {"minimal_pairs_fr": {"metric": "acc", "value": 0.5 + 0.1 * a, "stderr": 0.05}},
               "tokens": 4096, "wall_seconds": 10.0 + s, "energy_kwh": 1e-5} for k, (a, n, s) in enumerate(grid)]
    data = {"sweep": "grid", "recipe": "r.yaml", "proxy": "tiny", "fields": ["model.overrides.alibi", "model.overrides.embedding_norm",
            "train.seed"], "zip": False, "seeds": 2, "until": "evaluate", "languages": ["fr", "en"],
            "stage_runs": {"planned": {"corpus": 1}, "made": {"corpus": 1}, "points": 8},
            "wall_seconds": {"stages_run": 60.0, "points_by_hand": 90.0}, "points": points, "settings": settings(points, ["fr", "en"])}
    plots = report.write(data, tmp_path, "fournil sweep grid.yaml")
    assert [name for name, uri in plots.items() if uri] == [
        "bits per byte against model.overrides.alibi", "task scores against model.overrides.alibi", "cost against model.overrides.alibi",
        "bits per byte against model.overrides.embedding_norm", "task scores against model.overrides.embedding_norm",
        "cost against model.overrides.embedding_norm", "Pareto front"]
    assert [s["pareto"] for s in data["settings"]] == [False, False, True, False]  # alibi on, norm off: best in both
    md = (tmp_path / "sweep.md").read_text()
    assert "| true | false | 2/2 | 2.815 ± 0.007 | 2.485 ± 0.007 | 0.600 ± 0.000 | 4.1k | 12 s | 1e-05 | ★ |" in md
    html = (tmp_path / "sweep.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 7 and "<script" not in html


def test_points_run_as_jobs_in_an_order_that_shares(tmp_path):
    sweep = make(tmp_path, "model.overrides.alibi=false,true", "model.overrides.embedding_norm=false,true", seeds=2)
    assert len(sweep.points) == 8 and sweep.points[1].values == {"model.overrides.alibi": False,
                                                                  "model.overrides.embedding_norm": False, "train.seed": 12}
    assert sweep.runs_per_stage() == {"corpus": 1, "tokenizer": 1, "mixture": 1, "train": 8, "sft": 8, "evaluate": 8, "release": 8}
    lines = [line.split("\t") for line in execute.commands(sweep, tmp_path)]
    assert lines[0][:2] == ["1", "-"] and lines[0][2].endswith(f"--point {sweep.points[0].name} --until mixture")
    assert all(after == "1" for _, after, _ in lines[1:]) and len(lines) == 9


def test_bad_input_fails_before_any_point_runs_naming_each_bad_point(tmp_path):
    with pytest.raises(FournilError, match=r"2 of 3 points are not a valid recipe:\n  fr-1.5: languages = .*shares must be ≥ 0\n"
                                           r"  fr-2: languages"):
        make(tmp_path, "languages.fr=0.5,1.5,2")
    with pytest.raises(FournilError, match="nope-1: train.nope = 1: unknown field"):
        make(tmp_path, "train.nope=1,2")
    with pytest.raises(FournilError, match="--vary train.lr: this field is varied twice"):
        make(tmp_path, "train.lr=0.001", "train.lr=0.002")
    with pytest.raises(FournilError, match="the value 0.1 is given twice"):
        make(tmp_path, "train.lr=0.1,0.1")
    with pytest.raises(FournilError, match="gpu-H200 is the same bake as gpu-H100"):
        make(tmp_path, "plan.gpu=H100,H200")
    with pytest.raises(FournilError, match="the recipe has no language 'de'"):
        make(tmp_path, "languages.de=0.2")
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written
    result = fournil("sweep", str(RECIPE), "--vary", "languages.fr=0.5,1.5", "--runs-dir", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: sweep sweep-mini-fr: 1 of 2 points is not a valid recipe:\n  fr-1.5: ")


def test_a_sweep_file_names_its_recipe_and_the_command_line_adds_to_it(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"sweep:\n  recipe: {RECIPE}\n  proxy: tiny\n  vary:\n    languages.fr: [0.3, 0.7]\n")
    cfg, base = config.build(path, ["train.lr=0.001,0.002"], None, False, None, [], None, None)
    sweep = expand(cfg, base, tmp_path)
    assert [p.name for p in sweep.points] == ["fr-0.3_lr-0.001", "fr-0.3_lr-0.002", "fr-0.7_lr-0.001", "fr-0.7_lr-0.002"]
    assert sweep.name == "sweep-mini-proxy-tiny-fr-lr" and sweep.points[0].recipe.proxy.size == "tiny"
    with pytest.raises(FournilError, match="--vary languages.fr: this field is varied twice"):
        config.build(path, ["languages.fr=0.5"], None, False, None, [], None, None)
    path.write_text(f"sweep:\n  recipe: {RECIPE}\n  vary: {{languages.fr: [0.3, 0.7], train.lr: [1, 2, 3]}}\n  zip: true\n")
    with pytest.raises(FournilError, match=r"--zip: every varied field needs as many values \(languages.fr 2, train.lr 3\)"):
        expand(*config.build(path, [], None, False, None, [], None, None), tmp_path)
    for shipped in sorted((ROOT / "recipes" / "sweeps").glob("*.yaml")):  # the shipped sweeps expand
        assert len(expand(*config.build(shipped, [], None, False, None, [], None, None), tmp_path).points) >= 4


def test_a_shared_file_is_copied_before_a_point_writes_it(tmp_path):
    source = tmp_path / "a" / "train"
    (source / "checkpoints").mkdir(parents=True)
    (source / "log.jsonl").write_text("step 1\n")
    assert link_stage(source, tmp_path / "b" / "train") == "linked"
    shared = tmp_path / "b" / "train" / "log.jsonl"
    assert shared.stat().st_ino == (source / "log.jsonl").stat().st_ino and (tmp_path / "b" / "train" / "checkpoints").is_dir()
    assert own_copies(source) == 1
    with open(source / "log.jsonl", "a") as log:  # a resumed stage appends to its log
        log.write("step 2\n")
    assert shared.read_text() == "step 1\n"
