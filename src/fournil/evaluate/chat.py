"""Chat scores per language: does the model answer in the user's language, and how close to the reference.

Language fidelity follows the Language Confusion Benchmark's line-level pass rate: an answer passes
when every line long enough to judge is identified, by fournil's language ID, as the language of the
prompt; a conversation whose reference answer is in another language (a translation request) is
left out of it. The identifier knows more languages than the recipe's (the six of the sample and the
recipe's own), so an answer in a third language fails rather than being forced into one of two.
Answers with no line long enough are counted apart, never passed. chrF and ROUGE-L compare each
answer with the held-out reference answer. `lm_eval_tasks` writes the same prompts as lm-eval tasks,
which `--harness lm-eval` runs through the model's chat template (`--tasks chat_heldout`).
`translation_scores` asks the shipped translation tasks as a user would ask the chat model: one
turn in the source language, no examples, as the shipped instruction data phrases its requests.
A chat model folder outside a run (`fournil evaluate MODEL_DIR`) answers the run's held-out
conversations when `--run` names one, else the shipped self-instruct seed tasks (`seed_conversations`:
written in each language, with reference answers, and not among the shipped sft data).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import yaml

from fournil.corpus.langid import make_identifier
from fournil.evaluate.metrics import bootstrap, chrf, mean_stderr, rouge_l

JUDGED_LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl")
MIN_LETTERS = 12  # a line with fewer letters is too short for the identifier to judge


# The request, in the source language ("Translate into <target>:" then the text on the next line), for
# the directions of the shipped translation tasks; data/instructions/translation-asked-in-*.jsonl ask so.
TRANSLATE = {
    ("en", "fr"): "Translate into French:", ("en", "de"): "Translate into German:", ("en", "es"): "Translate into Spanish:",
    ("en", "it"): "Translate into Italian:", ("en", "pt"): "Translate into Portuguese:",
    ("fr", "en"): "Traduis en anglais :", ("de", "en"): "Übersetze ins Englische:", ("es", "en"): "Traduce al inglés:",
    ("it", "en"): "Traduci in inglese:", ("pt", "en"): "Traduza para o inglês:",
}


def judge_lines(answer: str, identifier) -> list[str]:  # noqa: ANN001
    """The identified language of each line long enough to judge."""
    lines = [line for line in answer.splitlines() if sum(ch.isalpha() for ch in line) >= MIN_LETTERS]
    if not lines:
        return []
    probabilities = identifier.probabilities(lines)
    return [identifier.labels[int(row.argmax())] for row in probabilities]


def fidelity(answers: list[tuple[str, str]], languages: list[str]) -> dict[str, dict]:
    """Per prompt language: {pass_rate, passed, judged, unjudged} over (prompt language, answer) pairs."""
    identifier = make_identifier(tuple(sorted(set(JUDGED_LANGUAGES) | set(languages))), "py3langid", None)
    by_lang: dict[str, dict] = defaultdict(lambda: {"passed": 0, "judged": 0, "unjudged": 0, "answered_in": defaultdict(int)})
    for lang, answer in answers:
        found = judge_lines(answer, identifier)
        row = by_lang[lang]
        if not found:
            row["unjudged"] += 1
            continue
        row["judged"] += 1
        row["passed"] += all(code == lang for code in found)
        for code in found:
            row["answered_in"][code] += 1
    return {lang: {**row, "answered_in": dict(sorted(row["answered_in"].items())),
                   "pass_rate": round(row["passed"] / row["judged"], 4) if row["judged"] else None}
            for lang, row in sorted(by_lang.items())}


def read_heldout(path: Path) -> list[dict]:
    """The held-out conversations the sft stage wrote: {lang, source, messages}."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def chat_scores(generator, conversations: list[dict], languages: list[str], sampling, per_language: int) -> dict:  # noqa: ANN001
    """Answer up to `per_language` held-out prompts per language (each conversation up to its last
    assistant turn) and score the answers: chrF and ROUGE-L against the reference, and fidelity on
    the conversations whose reference answers in the prompt's language. A prompt longer than the model's
    context is passed over and counted (`too_long`; the sft stage's held-out conversations all fit)."""
    picked: dict[str, list[tuple[dict, int, str]]] = defaultdict(list)
    too_long: dict[str, int] = defaultdict(int)
    for c in conversations:
        if len(picked[c["lang"]]) < per_language:
            last = max(i for i, m in enumerate(c["messages"]) if m["role"] == "assistant")
            prompt, _ = generator.chat_prompt(c["messages"][:last])
            if generator.fits(prompt):
                picked[c["lang"]].append((c, last, prompt))
            else:
                too_long[c["lang"]] += 1
    identifier = make_identifier(tuple(sorted(set(JUDGED_LANGUAGES) | set(languages))), "py3langid", None)
    results, answers, examples = {}, [], []
    for lang, items in sorted(picked.items()):
        predictions, references = [], []
        for c, last, prompt in items:
            answer = "".join(generator.stream(prompt, sampling)).strip()
            predictions.append(answer)
            references.append(c["messages"][last]["content"])
            if all(code == lang for code in judge_lines(references[-1], identifier)):  # not a request to answer in another language
                answers.append((lang, answer))
            if len(examples) < 2 * len(picked):
                examples.append({"lang": lang, "prompt": c["messages"][last - 1]["content"], "answer": answer,
                                 "reference": references[-1]})
        results[lang] = {"conversations": len(items), "too_long": too_long[lang], "chrf": bootstrap(chrf, predictions, references),
                         "rougeL": mean_stderr([rouge_l(p, r) for p, r in zip(predictions, references)])}
    for lang, row in fidelity(answers, languages).items():
        results[lang]["fidelity"] = row  # a language with no such conversation has no fidelity
    return {"per_language": results, "examples": examples}


def seed_conversations(languages: list[str]) -> list[dict]:
    """The shipped seed tasks of fournil.instruct as one-turn conversations, in those of `languages` that have seeds,
    the user turn laid out as the sft stage reads an Alpaca record (instruction, a blank line, the input)."""
    from fournil.instruct.languages import PACKS, load_pack

    conversations = []
    for lang in languages:
        for seed in load_pack(lang).seeds if (PACKS / "seeds" / f"{lang}.jsonl").is_file() else ():
            prompt = f"{seed.instruction}\n\n{seed.input}" if seed.input.strip() else seed.instruction
            conversations.append({"lang": lang, "source": f"seed:{seed.id}", "messages": [
                {"role": "user", "content": prompt}, {"role": "assistant", "content": seed.output}]})
    return conversations


def evaluate_chat(generator, conversations: list[dict], tasks, languages: list[str], config, log=print) -> dict:  # noqa: ANN001
    """The chat scores of the evaluate stage, and of a chat model folder: the conversations answered and scored per
    language, and the translation tasks among `tasks` asked in chat form, decoded greedily with `config`'s limits."""
    from fournil.model.generate import Sampling

    sampling = Sampling(max_new_tokens=config.max_new_tokens, repetition_penalty=1.1)  # greedy, deterministic
    scores = chat_scores(generator, conversations, languages, sampling, config.max_examples or 100)
    scores["translation"] = translation_scores(generator, tasks, languages, sampling, config.max_examples or 100)
    for direction, row in scores["translation"].items():
        log(f"[evaluate] chat translation {direction}: chrF {row['chrf']['value']:.4g} (n={row['examples']}), "
            f"in the target language {row['fidelity']['pass_rate']}")
    return scores


def translation_requests(prompter, task, per_direction: int) -> tuple[list[tuple[str, str, str]], int]:  # noqa: ANN001
    """The first `per_direction` test pairs of a translation task whose chat-form request fits the model's context, as
    (request, prompt rendered by the chat template, reference), and how many were passed over as too long. Empty for a
    direction without a phrasing."""
    pair = tuple(task.languages)
    if pair not in TRANSLATE:
        return [], 0
    requests, too_long = [], 0
    for doc in task.test_docs():
        if len(requests) == per_direction:
            break
        request = f"{TRANSLATE[pair]}\n{doc[pair[0]]}"
        prompt, _ = prompter.chat_prompt([{"role": "user", "content": request}])
        if not prompter.fits(prompt):
            too_long += 1
            continue
        requests.append((request, prompt, task.target_text(doc)))
    return requests, too_long


def translation_scores(generator, tasks, languages: list[str], sampling, per_direction: int) -> dict:  # noqa: ANN001
    """Per direction ("en-fr") of the given translation tasks: the requests of `translation_requests` answered,
    chrF of the answers against the reference, and the share of answers in the target language (fidelity, judged as
    for conversations)."""
    results = {}
    for task in tasks:
        requests, too_long = translation_requests(generator, task, per_direction)
        if not requests:
            continue
        source, target = task.languages
        predictions = ["".join(generator.stream(prompt, sampling)).strip() for _, prompt, _ in requests]
        references = [reference for _, _, reference in requests]
        results[f"{source}-{target}"] = {"task": task.name, "asked_in": source, "examples": len(predictions), "too_long": too_long,
                                         "chrf": bootstrap(chrf, predictions, references),
                                         "fidelity": fidelity([(target, p) for p in predictions], languages)[target]}
    return results


def single_turn(conversation: dict) -> list[dict] | None:
    """The conversation up to its last answer when that answer follows one user turn (after a system message or
    none): the prompts lm-eval's chat template can ask, one user message each. None for longer dialogues."""
    last = max((i for i, m in enumerate(conversation["messages"]) if m["role"] == "assistant"), default=None)
    if last is None:
        return None
    roles = [m["role"] for m in conversation["messages"][:last]]
    return conversation["messages"][:last + 1] if roles in (["user"], ["system", "user"]) else None


def lm_eval_tasks(conversations: list[dict], folder: Path, per_language: int, max_new_tokens: int,
                  repetition_penalty: float = 1.1) -> tuple[list[Path], int]:
    """One lm-eval generate_until task per language (`chat_heldout_<lang>`: the system message as description, the
    user turn as the prompt, chrF against the reference answer), decoded as the evaluate stage decodes (greedy,
    the same repetition penalty and token limit, stopping at <|im_end|>); the first `per_language` single-turn
    conversations of each language. Returns the task files and how many dialogues were left out."""
    picked: dict[str, list[dict]] = defaultdict(list)
    left_out = 0
    for c in conversations:
        messages = single_turn(c)
        if messages is None:
            left_out += 1
        elif len(picked[c["lang"]]) < per_language:
            system = messages[0]["content"] if messages[0]["role"] == "system" else ""
            picked[c["lang"]].append({"system": system, "prompt": messages[-2]["content"], "reference": messages[-1]["content"]})
    files = [_lm_eval_task(folder, f"chat_heldout_{lang}", docs, [lang], max_new_tokens, repetition_penalty, "{{system}}")
             for lang, docs in sorted(picked.items())]
    return files, left_out


def translation_lm_eval_tasks(prompter, tasks, folder: Path, per_direction: int, max_new_tokens: int,  # noqa: ANN001
                              repetition_penalty: float = 1.1) -> list[Path]:
    """One lm-eval task per direction of the given translation tasks (`chat_translation_<source>_<target>`): the requests
    `translation_scores` asks, as one user turn each, decoded and scored by chrF as `lm_eval_tasks` does."""
    files = []
    for task in tasks:
        requests, _ = translation_requests(prompter, task, per_direction)
        if requests:
            docs = [{"prompt": request, "reference": reference} for request, _, reference in requests]
            files.append(_lm_eval_task(folder, "chat_translation_" + "_".join(task.languages), docs, list(task.languages),
                                       max_new_tokens, repetition_penalty))
    return files


def _lm_eval_task(folder: Path, name: str, docs: list[dict], languages: list[str], max_new_tokens: int, repetition_penalty: float,
                  description: str | None = None) -> Path:
    """NAME.jsonl and NAME.yaml in `folder`: a generate_until task over {prompt, reference} docs, greedy, stopping at
    <|im_end|>, chrF against the reference."""
    from fournil.tokenizer import IM_END

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    task = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl"}}, "test_split": "test",
            "output_type": "generate_until", **({"description": description} if description is not None else {}),
            "doc_to_text": "{{prompt}}", "doc_to_target": "{{reference}}",
            "generation_kwargs": {"until": [IM_END], "do_sample": False, "repetition_penalty": repetition_penalty,
                                  "max_gen_toks": max_new_tokens},
            "metric_list": [{"metric": "chrf", "aggregation": "chrf", "higher_is_better": True}],
            "metadata": {"version": 1, "languages": languages}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(task, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder / f"{name}.yaml"
