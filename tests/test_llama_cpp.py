"""fournil's GGUF in llama.cpp itself (llama-cpp-python), on the baked mini run: the same token ids as
fournil's tokenizer on held-out text in every sample language, and the same greedy continuation as
fournil at f32. llama-cpp-python builds llama.cpp from source: `pip install 'fournil[llamacpp]'`
(about 8 CPU-minutes; pip caches the wheel). Without it these tests skip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'fournil[llamacpp]' (builds llama.cpp)")

from fournil.corpus.documents import iter_documents, read_documents  # noqa: E402
from fournil.model.generate import Sampling, generate_tokens  # noqa: E402
from fournil.model.gguf_export import export_gguf  # noqa: E402
from fournil.model.io import load_model  # noqa: E402
from fournil.tokenizer import load  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
LANGS = ("en", "fr", "de", "es", "it", "pt")


def heldout(run: Path, lang: str, chars: int = 60_000) -> list[str]:
    """The run's held-out documents (fr, en), or the shipped sample's for languages the run never read."""
    docs = iter_documents(run / "corpus", "heldout", lang) if lang in ("fr", "en") else \
        (d for path in sorted((SAMPLE / lang).glob("*.jsonl.zst")) for d in read_documents(path))
    texts, total = [], 0
    for doc in docs:
        texts.append(doc["text"])
        total += len(doc["text"])
        if total >= chars:
            break
    return texts


@pytest.fixture(scope="module")
def llm(baked, tmp_path_factory):
    out = export_gguf(baked / "release", tmp_path_factory.mktemp("gguf") / "mini-F32.gguf", outtype="f32", name="mini")
    return llama_cpp.Llama(str(out), n_ctx=128, n_threads=2, logits_all=True, verbose=False)


@pytest.mark.parametrize("lang", LANGS)
def test_llama_cpp_gives_the_same_token_ids(baked, llm, lang):
    tokenizer = load(baked / "tokenizer")
    texts = heldout(baked, lang)
    differ = [t[:60] for t in texts if llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) != tokenizer.encode(t).ids]
    assert texts and not differ, f"{len(differ)} of {len(texts)} {lang} documents tokenised differently: {differ[:3]}"


def test_llama_cpp_continues_greedily_as_fournil_at_f32(baked, llm):
    model = load_model(baked / "release").float().eval()
    tokenizer = load(baked / "tokenizer")
    for lang in ("fr", "en"):
        prompt = tokenizer.encode(heldout(baked, lang)[0]).ids[:32]
        ours = list(generate_tokens(model, prompt, Sampling(max_new_tokens=24)))
        llm.reset()
        llm.eval(prompt)
        with torch.no_grad():
            expected = model(torch.tensor([prompt]))[0, -1].numpy()
        assert np.abs(llm.scores[llm.n_tokens - 1] - expected).max() < 1e-3 * np.abs(expected).max()
        theirs = []
        for _ in ours:
            theirs.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([theirs[-1]])
        assert theirs == ours, lang


def test_llama_cpp_runs_the_quantized_files_close_to_f32(baked, tmp_path):
    """Q8_0 and Q4_0 next-token logits on a French prompt, against fournil's at f32. n_batch=1: this
    build of llama.cpp crashes here (AMX CPU) evaluating several tokens at once with quantized weights,
    its own llama_model_quantize's files too."""
    model = load_model(baked / "release").float().eval()
    prompt = load(baked / "tokenizer").encode(heldout(baked, "fr")[0]).ids[:32]
    with torch.no_grad():
        expected = model(torch.tensor([prompt]))[0, -1].numpy()
    errors = {}
    for outtype in ("q8_0", "q4_0"):
        out = export_gguf(baked / "release", tmp_path / f"{outtype}.gguf", outtype=outtype, name="mini")
        llm = llama_cpp.Llama(str(out), n_ctx=128, n_batch=1, n_threads=2, logits_all=True, verbose=False)
        llm.eval(prompt)
        errors[outtype] = float(np.abs(llm.scores[llm.n_tokens - 1] - expected).max() / np.abs(expected).max())
        assert int(np.argmax(llm.scores[llm.n_tokens - 1])) == int(np.argmax(expected)) or outtype == "q4_0"
    print(f"relative max logit error: {errors}")
    assert errors["q8_0"] < 0.02 and errors["q8_0"] < errors["q4_0"] < 0.2


def test_llama_cpp_runs_a_bloom_export_as_fournil(baked, tmp_path):
    """llama.cpp's bloom architecture on fournil's BLOOM export (ALiBi with 6 heads, a count whose slopes
    follow BLOOM's rule for non-powers of 2; fused q, k, v; biases; embedding LayerNorm; tied head): the
    same logits at every position of a French prompt at f32, and the same greedy continuation."""
    import dataclasses

    from fournil.model.hf import export_hf
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    tokenizer = load(baked / "tokenizer")
    config = dataclasses.replace(PRESETS["bloom-1b7"], vocab_size=tokenizer.get_vocab_size(), dim=96, n_layers=2, n_heads=6,
                                 n_kv_heads=6, ffn_dim=384, context_length=128, init_std=0.1)
    torch.manual_seed(3)
    model = Llama(config).eval()
    with torch.no_grad():  # norms and biases away from 1 and 0, so a misplaced one shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
            elif p.ndim == 1:
                p.uniform_(0.5, 1.5)
    out = export_gguf(export_hf(model, baked / "tokenizer", tmp_path / "bloom"), tmp_path / "bloom-F32.gguf", outtype="f32")
    llm = llama_cpp.Llama(str(out), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    prompt = tokenizer.encode(heldout(baked, "fr")[0]).ids[:48]
    llm.eval(prompt)
    with torch.no_grad():
        expected = model(torch.tensor([prompt]))[0].numpy()
    theirs = np.asarray(llm.scores[:len(prompt)])
    assert np.abs(theirs - expected).max() < 1e-3 * np.abs(expected).max()
    ours = list(generate_tokens(model, prompt, Sampling(max_new_tokens=16)))
    greedy = []
    for _ in ours:
        greedy.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([greedy[-1]])
    assert greedy == ours
