"""Build data/sample/ from ../shared/corpus: a subset of documents chosen by document key.

A document is chosen by a hash of its key, with nested per-language fractions, so a document kept in
the language with the smallest fraction is kept with all its translations. Parallel en-fr pairs are taken only from documents outside the sample,
so that they can serve as evaluation data without overlapping any training text. Re-running gives the
same files (the choice is a hash of the key, not a random draw).

    python scripts/make_sample.py ../shared/corpus data/sample
"""

import hashlib
import io
import json
import shutil
import sys
import sysconfig
from pathlib import Path

import zstandard

LANGS = ("en", "fr", "de", "es", "it", "pt")
EXCLUDED_SOURCES = {"fortunes"}  # unclear licence
KEEP = {"en": 0.34, "fr": 0.42, "de": 0.22, "es": 0.22, "it": 0.26, "pt": 0.3}  # share of document keys kept
PAIRS = {"train": 400, "test": 400}
# permissively licensed code (category code): modules of the Python standard library running this script
CODE_FILES = ("bisect.py", "colorsys.py", "fnmatch.py", "fractions.py", "graphlib.py", "heapq.py", "reprlib.py",
              "shlex.py", "statistics.py", "textwrap.py")


def key_of(doc_id: str) -> str:
    return doc_id.split("#")[0]


def unit(key: str, salt: str = "sample") -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_jsonl_zst(path: Path):
    with open(path, "rb") as raw:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8"):
            yield json.loads(line)


def write_jsonl_zst(path: Path, docs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))


LICENSES = {  # source → (licence, licence file under licenses/, Debian packages)
    "wesnoth": ("GPL-2.0-or-later", "GPL-2.0.txt", "wesnoth-1.16-data and campaign packages (.mo catalogues)"),
    "debian-handbook": ("GPL-2.0-or-later OR CC-BY-SA-3.0 (shipped under GPL-2.0-or-later)", "GPL-2.0.txt", "debian-handbook"),
    "debian-reference": ("GPL-2.0-or-later", "GPL-2.0.txt", "debian-reference-{en,fr,de,es,it,pt}"),
    "installation-guide": ("GPL-2.0-only", "GPL-2.0.txt", "installation-guide-amd64"),
    "maint-guide": ("GPL-2.0-or-later", "GPL-2.0.txt", "maint-guide*"),
    "developers-reference": ("GPL-2.0-or-later", "GPL-2.0.txt", "developers-reference*"),
    "gnome-user-docs": ("CC-BY-SA-3.0", "CC-BY-SA-3.0.txt", "gnome-user-docs (Mallard pages)"),
    "libreoffice-help": ("MPL-2.0", "MPL-2.0.txt", "libreoffice-help-{en-us,fr,de,es,it,pt-br}"),
    "gimp-help": ("GFDL-1.2-or-later", "GFDL-1.2.txt", "gimp-help-{en,fr,de,es,it,pt}"),
    "manpages": ("GPL-3.0-or-later (translations)", "GPL-3.0.txt", "manpages, manpages-{fr,de,es,it,pt-br}"),
    "bible": ("public domain (KJV, Sagradas Escrituras 1569 Reina/1602 Valera)", "PUBLIC-DOMAIN.txt", "sword-text-kjv, sword-text-sparv"),
}


def datasheet(sizes: dict, pairs: dict, code: str) -> str:
    """The sample's datasheet, every figure computed from the files just written."""
    langs = sorted({lang for lang, _ in sizes})
    rows = ["| language | documents | words | MB (zstd) |", "|---|---:|---:|---:|"]
    for lang in langs:
        n = sum(v[0] for (l, _), v in sizes.items() if l == lang)
        w = sum(v[1] for (l, _), v in sizes.items() if l == lang)
        b = sum(v[2] for (l, _), v in sizes.items() if l == lang)
        rows.append(f"| {lang} | {n:,} | {w:,} | {b / 1e6:.2f} |")
    sources = ["| source | licence | licence text | Debian packages | languages |", "|---|---|---|---|---|"]
    for source, (licence, file, packages) in LICENSES.items():
        present = sorted(l for (l, s) in sizes if s == source)
        if present:
            sources.append(f"| {source} | {licence} | licenses/{file} | {packages} | {', '.join(present)} |")
    return f"""# Datasheet: the fournil sample corpus

Real text in {len(langs)} languages ({', '.join(langs)}) taken from the documentation, translations and
games packaged in Debian 12, for fournil's demo bake and tests. Built by `scripts/make_sample.py` from
the raw multilingual corpus extracted with `apt-get download` + `dpkg-deb -x`; this file is written by
that script, so every figure below is computed, not typed.

## Composition
{chr(10).join(rows)}

Each `<lang>/<source>.jsonl.zst` holds one document a line with fields `id, text, source, lang,
category, license, debian_package_variant`. `lang` is the language the package declares, not a
verified label: the text is raw on purpose and still holds what curation must remove (English passages
left untranslated inside translations, command listings, repeated paragraphs, very short lines).

## Selection
A document is kept when a hash of its key (`id` up to any `#`) falls below a per-language fraction
(`KEEP` in the script), so the selections are nested: a document kept in a language with a small
fraction is kept in every language, with its translations. The `fortunes` packages are excluded
(unclear licence). Document keys overlap across languages: evaluation must hold out by key, in every
language at once (fournil's corpus stage does).

## Parallel pairs
`parallel/en-fr.train.tsv` ({pairs['train']} pairs) and `parallel/en-fr.test.tsv` ({pairs['test']} pairs): aligned
English–French segments (header `source doc en fr`) from documents **outside** the sample corpus,
4–40 English words, no template variables; train and test pairs come from different documents.

{code}
## Sources and licences
{chr(10).join(sources)}

Licence texts are in `licenses/`. Copyright stays with the original authors and translators.
""" 


def copy_code(dst: Path) -> str:
    """Copy CODE_FILES and the PSF licence from this Python's standard library; return the datasheet section."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = dst / "code" / "python"
    out.mkdir(parents=True, exist_ok=True)
    for name in CODE_FILES:
        shutil.copyfile(stdlib / name, out / name)
    shutil.copyfile(stdlib / "LICENSE.txt", dst / "licenses" / "PSF-2.0.txt")
    lines = sum(len((out / name).read_text(encoding="utf-8").splitlines()) for name in CODE_FILES)
    size = sum((out / name).stat().st_size for name in CODE_FILES)
    return f"""## Code
`code/python/` holds {len(CODE_FILES)} modules of the Python {sys.version_info.major}.{sys.version_info.minor} standard library
({lines:,} lines, {size / 1e3:.0f} kB: {', '.join(CODE_FILES)}), copied unchanged, licensed under the
PSF-2.0 (`licenses/PSF-2.0.txt`, the licence file shipped with Python). A recipe reads them as a source
tree: `{{path: ../data/sample/code/python, format: code, extensions: [.py], category: code, lang: en,
license: PSF-2.0}}`, one document per file; English is their comments' and names' language. Their authors'
e-mail addresses are in the files as shipped (fournil's PII step masks them).
"""


def main(src: Path, dst: Path) -> None:
    sizes = {}
    for lang in LANGS:
        for path in sorted((src / lang).glob("*.jsonl.zst")):
            source = path.name.removesuffix(".jsonl.zst")
            if source in EXCLUDED_SOURCES:
                continue
            docs = [d for d in read_jsonl_zst(path) if unit(key_of(d["id"])) < KEEP[lang]]
            out = dst / lang / path.name
            write_jsonl_zst(out, docs)
            sizes[(lang, source)] = (len(docs), sum(len(d["text"].split()) for d in docs), out.stat().st_size)
    lines = [line.split("\t") for line in zstandard.ZstdDecompressor().stream_reader(
        open(src / "parallel" / "en-fr.tsv.zst", "rb")).read().decode().splitlines()]
    header, rows = lines[0], lines[1:]
    outside = [r for r in rows if unit(f"{r[0]}/{r[1]}") >= max(KEEP.values()) and 4 <= len(r[2].split()) <= 40
               and r[0] not in EXCLUDED_SOURCES and "$" not in r[2] + r[3]]
    outside.sort(key=lambda r: unit(r[2], "pairs"))
    # Train and test pairs come from different documents, so a test sentence's neighbours never train.
    by_split = {"train": [], "test": []}
    for r in outside:
        split = "test" if unit(f"{r[0]}/{r[1]}", "split") < 0.5 else "train"
        if len(by_split[split]) < PAIRS[split]:
            by_split[split].append(r)
    for split, chosen in by_split.items():
        out = dst / "parallel" / f"en-fr.{split}.tsv"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join("\t".join(r) for r in [header] + chosen) + "\n", encoding="utf-8")
    json.dump({f"{lang}/{source}": {"docs": n, "words": w, "bytes_zst": b} for (lang, source), (n, w, b) in sizes.items()},
              open(dst / "sizes.json", "w"), indent=1)
    code = copy_code(dst)
    (dst / "DATASHEET.md").write_text(datasheet(sizes, {k: len(v) for k, v in by_split.items()}, code), encoding="utf-8")
    total = sum(b for _, _, b in sizes.values())
    print(f"{total / 1e6:.2f} MB compressed in {len(sizes)} files")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
