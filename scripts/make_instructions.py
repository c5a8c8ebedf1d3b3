"""Build the shipped instruction data (data/instructions/) for the demo's chat model and the tests.

- chatterbot-<lang>.jsonl: the dialogues of the `chatterbot-corpus` package (BSD-3-Clause) in
  en, fr, de, es, it, pt, as `messages` JSONL; turns alternate user/assistant from the first, a
  trailing user turn is dropped, exact duplicates are kept once.
- translation-asked-in-en.jsonl, translation-asked-in-fr.jsonl: translation requests built from
  data/sample/parallel/en-fr.train.tsv (the training pairs; the test pairs feed the evaluation
  tasks), each pair once in each direction, the request written in English for half the pairs and
  in French for the other half (a source has one user language).

`pip download --no-deps chatterbot-corpus==1.3.3 && unzip chatterbot_corpus-1.3.3-py2.py3-none-any.whl -d cb`
then `python scripts/make_instructions.py --chatterbot cb/chatterbot_corpus/data`.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian", "pt": "portuguese"}
REQUESTS = {  # (language the request is written in, target language) → the request
    ("en", "fr"): "Translate into French:", ("en", "en"): "Translate into English:",
    ("fr", "fr"): "Traduis en français :", ("fr", "en"): "Traduis en anglais :",
}


def dialogues(folder: Path) -> list[list[dict]]:
    found, seen = [], set()
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for turns in data.get("conversations") or []:
            turns = [str(t).strip() for t in turns if isinstance(t, str | int | float) and str(t).strip()]
            turns = turns[: len(turns) // 2 * 2]
            key = tuple(turns)
            if len(turns) < 2 or key in seen:
                continue
            seen.add(key)
            found.append([{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)])
    return found


def translations(pairs_path: Path, asker: str) -> list[list[dict]]:
    with pairs_path.open(encoding="utf-8", newline="") as f:
        pairs = [(row["en"], row["fr"]) for row in csv.DictReader(f, delimiter="\t")]
    found = []
    for en, fr in pairs[0 if asker == "en" else 1::2]:
        found.append([{"role": "user", "content": f"{REQUESTS[asker, 'fr']}\n{en}"}, {"role": "assistant", "content": fr}])
        found.append([{"role": "user", "content": f"{REQUESTS[asker, 'en']}\n{fr}"}, {"role": "assistant", "content": en}])
    return found


def write(path: Path, conversations: list[list[dict]]) -> None:
    path.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chatterbot", type=Path, required=True, help="chatterbot_corpus/data of chatterbot-corpus 1.3.3")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "instructions")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for lang, folder in FOLDERS.items():
        conversations = dialogues(args.chatterbot / folder)
        write(args.out / f"chatterbot-{lang}.jsonl", conversations)
        counts[f"chatterbot-{lang}.jsonl"] = len(conversations)
    for asker in ("en", "fr"):
        pairs = translations(ROOT / "data" / "sample" / "parallel" / "en-fr.train.tsv", asker)
        write(args.out / f"translation-asked-in-{asker}.jsonl", pairs)
        counts[f"translation-asked-in-{asker}.jsonl"] = len(pairs)
    for name, n in counts.items():
        print(f"{name}: {n} conversations")


if __name__ == "__main__":
    main()
