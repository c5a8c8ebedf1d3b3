"""The model card: Hub metadata that validates, figures equal to the manifests, missing shown as missing."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from fournil.release.render import num, pct, sig
from fournil.release.stage import run
from release_fakes import (CORPUS, EVALUATE, FAKE_PARAMETERS, MEMORISATION_BY_REPEATS, SHARDS, TASKS, TOKENIZER, TRAIN, context,
                           install_fake_hf, make_run)


@pytest.fixture
def released(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    ctx = context(make_run(tmp_path / "run"), intended_use="Research on small multilingual models.", contact="team@example.org")
    figures = run(ctx)
    return ctx.out, figures


def released_run(out):
    return out.parent


def _row(card: str, first_cell: str, table_header: str) -> list[str]:
    """The cells of the row starting with `first_cell` in the table whose header starts with `table_header`."""
    section = card[card.index(table_header):]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} under {table_header!r}")


def test_card_metadata_validates_against_the_hub_fields(released):
    out, _ = released
    card = ModelCard((out / "README.md").read_text())  # parses the YAML with the Hub's ModelCardData
    data = card.data
    assert data.language == ["fr", "en", "de"]
    assert data.license == "apache-2.0"
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert "fournil" in data.tags
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "demo-fake"
    got = {(r.dataset_config, r.metric_type): r.metric_value for r in results}
    for lang, e in EVALUATE.items():
        assert got[(lang, "bits_per_byte")] == e["bits_per_byte"]
        assert got[(lang, "unigram_bits_per_byte")] == e["unigram_bits_per_byte"]
        assert got[(lang, "byte_perplexity")] == e["byte_perplexity"]
    co2 = data.co2_eq_emissions
    assert co2["emissions"] == pytest.approx(TRAIN["energy"]["kg_co2eq"] * 1000)
    assert co2["source"] == TRAIN["energy"]["method"]
    assert co2["hardware_used"] == "1 × NVIDIA H100 80GB HBM3"
    assert co2["training_type"] == "pre-training"


def test_card_figures_equal_the_manifests(released):
    out, figures = released
    card = (out / "README.md").read_text()
    for lang, e in EVALUATE.items():
        assert _row(card, lang, "| language | bits per byte")[1:] == [
            num(e["bits_per_byte"]), num(e["unigram_bits_per_byte"]), num(e["beats_unigram"]),
            num(e["byte_perplexity"]), num(e["documents"]), num(e["bytes"])]
    for lang, c in CORPUS.items():
        cells = _row(card, lang, "| language | target share")
        assert cells[2:6] == [num(c["documents"]), num(c["characters"]), num(c["words"]), num(c["heldout_documents"])]
        mixture = json.loads((released_run(out) / "mixture/manifest.json").read_text())["figures"]["per_language"][lang]
        assert cells[6:10] == [num(mixture["tokens"]), num(mixture["planned_tokens"]), pct(mixture["share"]), num(mixture["epochs"], 2)]
    for lang, t in TOKENIZER.items():
        assert _row(card, lang, "| language | fertility")[1:] == [num(t[k]) for k in
                                                                 ("fertility", "split_word_share", "bytes_per_token", "chars_per_token", "parity_vs_en")]
    for (lang, source), (category, tokens, _) in SHARDS.items():
        if (lang, category) != ("fr", "docs"):  # one source per (language, category) in the fixture
            assert f"| {lang} | {category} | {num(tokens)} |" in card
    assert _row(card, "optimizer", "| figure | value")[1] == ("Muon (Newton–Schulz-orthogonalised momentum) for the blocks' matrices, "
                                                             "AdamW (β 0.9/0.95) for embeddings, head and norms, weight decay 0.1")  # the defaults
    assert _row(card, "learning rate", "| figure | value")[1] == "0.003 peak, 100 warmup steps, cosine to 10.0% of the peak"
    assert _row(card, "tokens a step", "| figure | value")[1] == "65,536"
    assert _row(card, "steps", "| figure | value")[1] == num(TRAIN["steps"])
    assert _row(card, "tokens seen", "| figure | value")[1] == num(TRAIN["tokens"])
    assert _row(card, "energy (kWh)", "| figure | value")[1] == sig(TRAIN["energy"]["kwh"]) == "0.0912"
    assert _row(card, "emissions (g CO2eq)", "| figure | value")[1] == sig(TRAIN["energy"]["kg_co2eq"] * 1000) == "5.2"
    assert _row(card, "energy, codecarbon's offline tracker (kWh)", "| figure | value")[1] == "0.0874"
    assert _row(card, "emissions, codecarbon (FRA grid, g CO2eq)", "| figure | value")[1] == "4.89"
    assert _row(card, "fr", "| language | final loss")[1] == num(TRAIN["per_language"]["fr"]["final_loss"])
    assert f"{num(FAKE_PARAMETERS)} parameters" in card and figures["parameters"] == FAKE_PARAMETERS
    assert "Research on small multilingual models." in card
    assert "On de the model does not beat a unigram baseline" in card  # EVALUATE["de"]["beats_unigram"] is False
    assert "On fr the model" not in card
    score = json.loads((out / "transparency.json").read_text())["score"]
    assert f"**Transparency:** {score['met']} of {score['total']}" in card.replace("\n", " ")


def test_card_states_the_recipes_optimizer_and_schedule(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    train = {"optimizer": "adamw", "lr": 0.02, "schedule": "wsd", "decay_fraction": 0.25, "warmup_steps": 30, "weight_decay": 0.05}
    ctx = context(make_run(tmp_path / "run"), train=train)
    run(ctx)
    card = (ctx.out / "README.md").read_text()
    assert _row(card, "optimizer", "| figure | value")[1] == "AdamW (β 0.9/0.95), weight decay 0.05"
    assert _row(card, "learning rate", "| figure | value")[1] == ("0.02 peak, 30 warmup steps, constant, then linear decay over the "
                                                                 "last 25.0% of the steps to 10.0% of the peak")


def test_missing_records_are_shown_as_missing_never_invented(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run", drop=frozenset({"mixture/plan.json", "train/log.jsonl"}))
    for stage, figures in (("train", ("energy", "tokens")), ("evaluate", ("per_language", "memorisation"))):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        for key in figures:
            del manifest["figures"][key]
        (run_dir / stage / "manifest.json").write_text(json.dumps(manifest))
    ctx = context(run_dir)
    figures = run(ctx)
    card = (ctx.out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "co2_eq_emissions" not in meta
    # no held-out figures: the model-index has only the task scores, read back from results.json
    assert {r["task"]["name"] for r in meta["model-index"][0]["results"]} == set(TASKS)
    ModelCard(card)  # still valid
    for lang in EVALUATE:
        assert _row(card, lang, "| language | bits per byte")[1:] == ["not recorded"] * 6
    # without plan.json, tokens by category still come from the shard headers; planned tokens are not recorded
    assert "| en | religious | 250,004 | not recorded |" in card
    assert _row(card, "tokens seen", "| figure | value")[1] == "not recorded"
    assert _row(card, "energy (kWh)", "| figure | value")[1] == "not recorded"
    assert "codecarbon" not in card
    assert "The model was not evaluated on fr" in card
    assert {"mixture/plan.json", "train/log.jsonl"} <= set(figures["missing_records"])
    checklist = {i["indicator"]: i for i in json.loads((ctx.out / "transparency.json").read_text())["indicators"]}
    assert checklist["Energy usage"]["status"] == "not met"
    assert checklist["Evaluation of capabilities"]["status"] == "met"  # results.json is still there
    assert checklist["Capabilities description"]["status"] == "not met"
    assert not re.search(r"\bnan\b|None", card)


def test_a_wall_time_the_train_stage_could_not_know_is_not_replaced_by_its_last_resume(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run")
    manifest = json.loads((run_dir / "train" / "manifest.json").read_text())
    manifest["figures"]["wall_seconds"], manifest["wall_seconds"] = None, 1.6  # resumed from an older checkpoint
    (run_dir / "train" / "manifest.json").write_text(json.dumps(manifest))
    ctx = context(run_dir)
    run(ctx)
    assert _row((ctx.out / "README.md").read_text(), "wall time", "| figure | value")[1] == "not recorded"


def test_memorisation_table_has_one_row_per_repeat_count(released):
    out, _ = released
    card = (out / "README.md").read_text()
    header = "| repeats | canaries | extracted | extraction rate | suffix token accuracy | loss | loss ratio |"
    assert header in card
    for repeats, (n, extracted, accuracy, loss, ratio) in MEMORISATION_BY_REPEATS.items():
        assert _row(card, str(repeats), header)[1:] == [num(n), num(extracted), pct(extracted / n), pct(accuracy), num(loss), num(ratio)]
    assert "{'canaries'" not in card
    report = (out / "report.html").read_text()
    assert f"<td>100</td><td>1</td><td>1</td><td>{pct(1.0)}</td>" in report


def test_tasks_and_fallbacks_read_the_files_the_stages_write(tmp_path, monkeypatch):
    """Without the manifests' figures, tasks, memorisation and tokenizer figures come from results.json and
    tokenizer_report.json in the layout those stages write."""
    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run")
    for stage, keys in (("evaluate", ("tasks", "task_details", "memorisation")), ("tokenizer", ("per_language",))):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        for key in keys:
            del manifest["figures"][key]
        (run_dir / stage / "manifest.json").write_text(json.dumps(manifest))
    ctx = context(run_dir)
    run(ctx)
    card = (ctx.out / "README.md").read_text()
    chrf = TASKS["translation_en_fr"]["metrics"]["chrf"]
    assert f"| translation_en_fr | en-fr | chrf | {num(chrf['value'])} | {num(chrf['stderr'])} | – | 20 | 3 |" in card
    assert f"| continuation_fr | fr | acc | {num(0.45)} | {num(0.11)} | {num(0.25)} | 20 | 0 |" in card, "score, stderr, chance"
    assert _row(card, "10", "| repeats | canaries")[2] == "1"
    assert _row(card, "fr", "| language | fertility")[1] == num(TOKENIZER["fr"]["fertility"])


def _real_tokenizer(folder) -> None:
    """A small byte-level BPE in the tokenizer stage's layout (ids 0-2 BOS, EOS, pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(["Le boulanger prépare le pain.", "The baker bakes bread."] * 20, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {"bos_token": specials[0], "eos_token": specials[1], "pad_token": specials[2], "tokenizer_class": "PreTrainedTokenizerFast"}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    (folder / "special_tokens_map.json").write_text(json.dumps({k: v for k, v in settings.items() if k.endswith("_token")}))


def test_release_with_gguf_writes_a_file_llama_cpp_reads(tmp_path):
    """The real exports (no stand-in): the HF folder, world-readable, and the GGUF named in the card."""
    import stat

    import torch
    from gguf import GGUFReader

    from fournil.model.io import save_model
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    run_dir = make_run(tmp_path / "run")
    _real_tokenizer(run_dir / "tokenizer")
    torch.manual_seed(0)
    model = Llama(PRESETS["tiny"])
    save_model(model, run_dir / "train/final")
    ctx = context(run_dir, gguf=True, model_name="tiny-bake")
    old_mask = os.umask(0o022)
    try:
        figures = run(ctx)
    finally:
        os.umask(old_mask)
    files = ["tiny-bake-F16.gguf", "tiny-bake-Q8_0.gguf", "tiny-bake-Q4_0.gguf"]
    assert figures["gguf"] == files
    types = {}
    for file in files:
        reader = GGUFReader(ctx.out / file)
        tensors = {t.name: t for t in reader.tensors}
        types[file] = {tensors[n].tensor_type.name for n in ("token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight")}
        name = reader.fields["general.name"]
        assert bytes(name.parts[name.data[0]]).decode() == "tiny-bake"  # the model's name, not the folder's
    assert types == {files[0]: {"F16", "F32"}, files[1]: {"Q8_0", "F32"}, files[2]: {"Q8_0", "Q4_0", "F32"}}
    assert list(tensors["token_embd.weight"].shape) == [model.config.dim, model.config.vocab_size]
    card = (ctx.out / "README.md").read_text()
    assert "llama-completion -m tiny-bake-F16.gguf -no-cnv" in card and "llama-cli -m tiny-bake-F16.gguf" in card
    assert "convert_hf_to_gguf" not in card and "fournil gguf" not in card
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", *files):
        assert stat.S_IMODE((ctx.out / name).stat().st_mode) == 0o644, name


def test_card_without_gguf_gives_fournils_convert_command(released):
    out, figures = released
    card = (out / "README.md").read_text()
    assert figures["gguf"] is None and "fournil gguf path/to/" in card
    assert "BPE pre-tokenizer was not recognized" in card  # what llama.cpp's own converter says of it


def test_card_and_report_show_the_reference_systems_published_scores(tmp_path, monkeypatch):
    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run")
    manifest = json.loads((run_dir / "evaluate" / "manifest.json").read_text())
    manifest["figures"]["reference"] = {"name": "TTL-460m", "source": "Corrêa et al. 2024",
                                        "scores": {"continuation_fr": 0.61, "arc_pt": 29.40}}
    (run_dir / "evaluate" / "manifest.json").write_text(json.dumps(manifest))
    ctx = context(run_dir)
    run(ctx)
    card = (ctx.out / "README.md").read_text()
    assert "| task | language | metric | score | ± stderr | chance | examples | shots | TTL-460m |" in card
    assert f"| continuation_fr | fr | acc | {num(0.45)} | {num(0.11)} | {num(0.25)} | 20 | 0 | {num(0.61)} |" in card
    assert f"| arc_pt | {num(None)} | {num(None)} | {num(None)} | – | – | {num(None)} | {num(None)} | {num(29.40)} |" in card, \
        "a published score the run did not measure is still shown"
    assert "Corrêa et al. 2024" in (ctx.out / "report.html").read_text()


def test_card_shows_hub_tasks_beside_a_named_reference_in_the_models_unit(tmp_path, monkeypatch):
    """evaluate.reference: ttl-460m gives TeenyTinyLlama-460m's published percentages (fournil.references), shown as
    fractions beside an lm-eval task's score; the task's Hub dataset goes into the model-index; skipped ones are named."""
    from fournil.evaluate.config import EvaluateConfig
    from fournil.evaluate.stage import figures as evaluate_figures

    install_fake_hf(monkeypatch)
    run_dir = make_run(tmp_path / "run")
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    results["checkpoints"][-1]["tasks"]["arc_pt"] = {
        "task": "arc_pt", "harness": "lm-eval", "output_type": "multiple_choice", "languages": ["pt"], "num_fewshot": 0, "examples": 40,
        "headline": "acc", "metrics": {"acc": {"value": 0.275, "stderr": 0.0715, "examples": 40}, "acc_norm": {"value": 0.3, "stderr": 0.0734,
                                       "examples": 40}, "chance": 0.2531},
        "dataset": {"path": "alexandrainst/m_arc", "name": "pt", "split": "test"}, "samples": []}
    results["harness"] = {"chat_template": False, "ran": ["arc_pt"], "skipped": {"hellaswag_pt": "its data is not in the local datasets cache"}}
    manifest = json.loads((run_dir / "evaluate" / "manifest.json").read_text())
    manifest["figures"] = {**evaluate_figures(results), "reference": EvaluateConfig(reference="ttl-460m").reference.model_dump()}
    (run_dir / "evaluate" / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "evaluate" / "results.json").write_text(json.dumps(results))
    ctx = context(run_dir)
    run(ctx)
    card = (ctx.out / "README.md").read_text()
    assert "| task | language | metric | score | ± stderr | chance | examples | shots | TeenyTinyLlama 460m |" in card
    assert f"| arc_pt † | pt | acc | {num(0.275)} | {num(0.0715)} | {num(0.2531)} | 40 | 0 | {num(0.294)} |" in card
    assert f"| m_mmlu_pt | {num(None)} | {num(None)} | {num(None)} | – | – | {num(None)} | {num(None)} | {num(28.55 / 100)} |" in card
    assert "published in percent and shown here as a fraction" in card and "arXiv:2401.16640" in card
    assert "did not run (their data was not in the local datasets cache" in card and "cache, or lm-eval\nwas not installed; " \
        "`evaluate/results.json` says which): hellaswag_pt." in card
    data = ModelCard(card).data
    _, hub = model_index_to_eval_results(data.to_dict()["model-index"])
    arc = {r.metric_type: r for r in hub if r.task_name == "arc_pt"}
    assert (arc["acc"].dataset_type, arc["acc"].dataset_config, arc["acc"].dataset_split, arc["acc"].metric_value) == \
        ("alexandrainst/m_arc", "pt", "test", 0.275)
    assert arc["acc_norm"].metric_value == 0.3
    assert "arc_pt †" in (ctx.out / "report.html").read_text()


def _renamed(model, old: str, new: str):
    """`model` with its field `old` called `new`, as a stage's figures model looks after a rename."""
    from pydantic import create_model

    fields = {name: (info.annotation, info) for name, info in model.model_fields.items() if name != old}
    return create_model(model.__name__, __base__=model.__base__, **fields, **{new: (model.model_fields[old].annotation, None)})


@pytest.mark.parametrize("stage, old", [("corpus", "steps"), ("tokenizer", "vocab_size"), ("mixture", "budget_tokens"),
                                        ("train", "tokens"), ("sft", "instruction_tuned"), ("evaluate", "task_details")])
def test_a_figure_renamed_in_its_stage_model_fails_the_release_loudly(tmp_path, stage, old, monkeypatch):
    """The release reads each stage's typed figures by name: a figure renamed in its model (and so in what the stage
    writes) that the release still reads by the old name is an error naming it, not a card that quietly says "not recorded"."""
    import importlib

    from fournil.release.facts import gather
    from fournil.release.records import Records
    from fournil.runs import get_stage

    run_dir = make_run(tmp_path / "run")
    manifest = run_dir / stage / "manifest.json"
    if manifest.is_file():  # the stage writes the figure under its new name
        data = json.loads(manifest.read_text())
        data["figures"][old + "_renamed"] = data["figures"].pop(old)
        manifest.write_text(json.dumps(data))
    ctx = context(run_dir)
    module_name, class_name = get_stage(stage).figures.split(":")
    module = importlib.import_module(module_name)
    monkeypatch.setattr(module, class_name, _renamed(getattr(module, class_name), old, old + "_renamed"))
    with pytest.raises(AttributeError, match=old):
        gather(Records.from_context(ctx), ctx.recipe, ctx.out)
