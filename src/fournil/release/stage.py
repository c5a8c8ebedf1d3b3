"""The release stage: a Hugging Face model folder with card, datasheet, checklist and report.

The weights and tokenizer come from `fournil.model.hf.export_hf`; every figure in the documents is
read from the run's records (`facts.gather`), and a missing record is shown as "not recorded".
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

from fournil.errors import FournilError
from fournil.release.card import datasheet, model_card
from fournil.release.facts import gather
from fournil.release.plots import all_plots
from fournil.release.records import Records
from fournil.release.render import render
from fournil.release.transparency import checklist
from fournil.runs import StageContext


def export_model(ctx: StageContext, records: Records) -> tuple[list[str] | None, str | None]:
    """Write the Hugging Face folder (and GGUF files when asked); return the GGUF file names if written, and
    why the model was not exported when transformers has no class that computes it: then the
    release holds fournil's own model folder (which `fournil generate`, `chat` and `evaluate` read)."""
    hf = importlib.import_module("fournil.model.hf")  # imported late: torch is only needed here
    from fournil.model.io import tokenizer_of

    tuned = bool(records.figures("sft").instruction_tuned)
    stage = "sft" if tuned else "train"  # the chat model when the run tuned one, else the base model
    final = (records.dir(stage) or ctx.run_dir / stage) / "final"
    if not (final / "model.safetensors").is_file():
        raise FournilError(f"{final} has no model.safetensors: run `fournil {stage} RECIPE` again")
    tokenizer = tokenizer_of(final, records.dir("tokenizer") or ctx.run_dir / "tokenizer")
    try:
        hf.export_hf(final, tokenizer, ctx.out)
    except FournilError as why:
        if "mixes Llama and BLOOM" not in str(why) and "not Llama-exportable" not in str(why):
            raise
        for name in ("model.safetensors", "config.json"):
            shutil.copyfile(final / name, ctx.out / name)
        for name in hf.TOKENIZER_FILES:
            if (tokenizer / name).is_file():
                shutil.copyfile(tokenizer / name, ctx.out / name)
        ctx.log(f"[release] not exported to transformers ({why}); released in fournil's own format instead")
        return None, str(why)
    if not ctx.recipe.release.gguf:
        return None, None
    gguf_export = importlib.import_module("fournil.model.gguf_export")
    name = ctx.recipe.release.model_name or ctx.recipe.name
    files = [gguf_export.file_name(name, outtype) for outtype in ctx.recipe.release.gguf_types]
    for outtype, file in zip(ctx.recipe.release.gguf_types, files):
        gguf_export.export_gguf(ctx.out, ctx.out / file, tokenizer_dir=tokenizer, outtype=outtype, name=name)
    return files, None


def write_documents(ctx: StageContext, records: Records, gguf: list[str] | None = None, not_exported: str | None = None) -> dict:
    """README.md, datasheet.md, transparency.json and report.html from the records; return the facts."""
    facts = gather(records, ctx.recipe, ctx.out)
    facts["gguf"] = gguf
    facts["model"]["not_exported"] = not_exported
    for name in ("README.md", "datasheet.md", "report.html"):  # the documents exist before the checklist looks for them
        (ctx.out / name).write_text("", encoding="utf-8")
    transparency = checklist(records, ctx.recipe, ctx.out)
    (ctx.out / "README.md").write_text(model_card(facts, transparency), encoding="utf-8")
    (ctx.out / "transparency.json").write_text(json.dumps(transparency, indent=2, ensure_ascii=False), encoding="utf-8")
    (ctx.out / "datasheet.md").write_text(datasheet(facts, ctx.recipe), encoding="utf-8")
    facts["transparency"] = transparency
    html = render("report.html.j2", f=facts, t=transparency, plots=all_plots(facts),
                  missing=sorted(set(records.missing)), skipped=dict(records.skipped))
    (ctx.out / "report.html").write_text(html, encoding="utf-8")
    return facts


def run(ctx: StageContext) -> dict:
    records = Records.from_context(ctx)
    gguf, not_exported = export_model(ctx, records)
    facts = write_documents(ctx, records, gguf, not_exported)
    for missing in sorted(set(records.missing)):
        ctx.log(f"[release] not recorded: {missing}")
    for reason, count in sorted(records.skipped.items()):
        ctx.log(f"[release] skipped {count} lines of {reason}")
    score = facts["transparency"]["score"]
    return {
        "parameters": facts["model"]["parameters"],
        "gguf": gguf,
        "format": facts["model"]["architecture"],
        "not_exported": not_exported,
        "transparency": score,
        "missing_records": sorted(set(records.missing)),
        "skipped_log_lines": dict(records.skipped),
        "files": sorted(p.name for p in Path(ctx.out).iterdir() if p.is_file() and not p.name.startswith(".")),
    }
