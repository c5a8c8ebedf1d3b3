"""The 100 indicators of the Foundation Model Transparency Index v1.0 (Bommasani et al., 2023), and how a
bake answers each: from its own records, or from a statement in the recipe's `release:` section.

Names, domains and subdomains are FMTI's (github.com/stanford-crfm/fmti, fmti-indicators.csv: 32
upstream, 33 model, 35 downstream). An indicator a bake can prove names its evidence: (stage, file,
field) records that must all exist ("recipe" names a recipe field; "release" a file of the release
folder). Any other indicator is a statement only people can make: it names the `release:` field that
supplies it, either an existing one (`contact`, `intended_use`, ...) or `disclosures.<key>`, where
the key is the indicator's name in snake case (`disclosures.wages`). FMTI awards several of them for
an honest "none" (no data labour, no hosted service), which a statement may say.
"""

from __future__ import annotations

import re

Evidence = tuple[tuple[str, str, str], ...]

CORPUS_STEPS = ("corpus", "stats.json", "steps")
TRAIN_LOG = ("train", "log.jsonl", "")
CONFIG = ("release", "config.json", "architectures")
WEIGHTS = ("release", "model.safetensors", "")
CARD = ("release", "README.md", "")
HELDOUT_SCORES = ("evaluate", "manifest.json", "figures.per_language")

# (domain, subdomain, indicator, evidence or the `release:` field that states it)
INDICATORS: tuple[tuple[str, str, str, Evidence | str], ...] = (
    ("upstream", "Data", "Data size", (("corpus", "manifest.json", "figures.per_language"), ("mixture", "plan.json", "groups"))),
    ("upstream", "Data", "Data sources", (("recipe", "", "sources"),)),
    ("upstream", "Data", "Data creators", "disclosures"),
    ("upstream", "Data", "Data source selection", "disclosures"),
    ("upstream", "Data", "Data curation", (CORPUS_STEPS,)),
    ("upstream", "Data", "Data augmentation", (("mixture", "plan.json", "groups"), ("mixture", "canaries.json", ""))),
    ("upstream", "Data", "Harmful data filtration", (("corpus", "manifest.json", "figures.harmful_lists"), ("corpus", "stats.json", "steps.harmful"))),
    ("upstream", "Data", "Copyrighted data", "disclosures"),
    ("upstream", "Data", "Data license", (("recipe", "", "sources"),)),
    ("upstream", "Data", "Personal information in data", (("recipe", "", "corpus.pii"), ("corpus", "stats.json", "steps.pii"))),
    ("upstream", "Data labor", "Use of human labor", "disclosures"),
    ("upstream", "Data labor", "Employment of data laborers", "disclosures"),
    ("upstream", "Data labor", "Geographic distribution of data laborers", "disclosures"),
    ("upstream", "Data labor", "Wages", "disclosures"),
    ("upstream", "Data labor", "Instructions for creating data", "disclosures"),
    ("upstream", "Data labor", "Labor protections", "disclosures"),
    ("upstream", "Data labor", "Third party partners", "disclosures"),
    ("upstream", "Data access", "Queryable external data access", "disclosures"),
    ("upstream", "Data access", "Direct external data access", "disclosures"),
    ("upstream", "Compute", "Compute usage", (("train", "manifest.json", "figures.flops_per_token"), ("train", "manifest.json", "figures.tokens"))),
    ("upstream", "Compute", "Development duration", (("train", "manifest.json", "figures.wall_seconds"),)),
    ("upstream", "Compute", "Compute hardware", (("train", "manifest.json", "figures.device.name"), ("train", "manifest.json", "figures.device.processes"))),
    ("upstream", "Compute", "Hardware owner", "disclosures"),
    ("upstream", "Compute", "Energy usage", (("train", "manifest.json", "figures.energy.kwh"),)),
    ("upstream", "Compute", "Carbon emissions", (("train", "manifest.json", "figures.energy.kg_co2eq"),)),
    ("upstream", "Compute", "Broader environmental impact", "disclosures"),
    ("upstream", "Methods", "Model stages", (TRAIN_LOG, ("mixture", "plan.json", "stages"))),
    ("upstream", "Methods", "Model objectives", (CONFIG,)),
    ("upstream", "Methods", "Core frameworks", (("train", "manifest.json", "versions"),)),
    ("upstream", "Methods", "Additional dependencies", (("corpus", "manifest.json", "versions"), ("tokenizer", "manifest.json", "versions"))),
    ("upstream", "Data Mitigations", "Mitigations for privacy", (("recipe", "", "corpus.pii"), ("corpus", "stats.json", "steps.pii"))),
    ("upstream", "Data Mitigations", "Mitigations for copyright", "disclosures"),

    ("model", "Model basics", "Input modality", (("release", "tokenizer.json", ""),)),
    ("model", "Model basics", "Output modality", (CONFIG,)),
    ("model", "Model basics", "Model components", (("release", "config.json", ""), ("release", "tokenizer.json", ""))),
    ("model", "Model basics", "Model size", (WEIGHTS,)),
    ("model", "Model basics", "Model architecture", (("release", "config.json", "num_hidden_layers"),)),
    ("model", "Model basics", "Centralized model documentation", (CARD,)),
    ("model", "Model access", "External model access protocol", (CARD, ("recipe", "", "release.license"))),
    ("model", "Model access", "Blackbox external model access", (WEIGHTS,)),
    ("model", "Model access", "Full external model access", (WEIGHTS,)),
    ("model", "Capabilities", "Capabilities description", (HELDOUT_SCORES,)),
    ("model", "Capabilities", "Capabilities demonstration", "disclosures"),
    ("model", "Capabilities", "Evaluation of capabilities", (("evaluate", "results.json", ""),)),
    ("model", "Capabilities", "External reproducibility of capabilities evaluation",
     (("evaluate", "manifest.json", "fingerprint"), ("corpus", "manifest.json", "figures.per_language"))),
    ("model", "Capabilities", "Third party capabilities evaluation", "disclosures"),
    ("model", "Limitations", "Limitations description", "disclosures"),
    ("model", "Limitations", "Limitations demonstration", (HELDOUT_SCORES,)),
    ("model", "Limitations", "Third party evaluation of limitations", (WEIGHTS,)),
    ("model", "Risks", "Risks description", "out_of_scope_use"),
    ("model", "Risks", "Risks demonstration", "disclosures"),
    ("model", "Risks", "Unintentional harm evaluation", (("evaluate", "manifest.json", "figures.memorisation"), ("mixture", "canaries.json", ""))),
    ("model", "Risks", "External reproducibility of unintentional harm evaluation",
     (("mixture", "canaries.json", ""), ("evaluate", "manifest.json", "fingerprint"))),
    ("model", "Risks", "Intentional harm evaluation", "disclosures"),
    ("model", "Risks", "External reproducibility of intentional harm evaluation", "disclosures"),
    ("model", "Risks", "Third party risks evaluation", "disclosures"),
    ("model", "Model Mitigations", "Mitigations description", "disclosures"),
    ("model", "Model Mitigations", "Mitigations demonstration", "disclosures"),
    ("model", "Model Mitigations", "Mitigations evaluation", "disclosures"),
    ("model", "Model Mitigations", "External reproducibility of mitigations evaluation", "disclosures"),
    ("model", "Model Mitigations", "Third party mitigations evaluation", "disclosures"),
    ("model", "Trustworthiness", "Trustworthiness evaluation", "disclosures"),
    ("model", "Trustworthiness", "External reproducibility of trustworthiness evaluation", "disclosures"),
    ("model", "Inference", "Inference duration evaluation", (("evaluate", "manifest.json", "figures.per_language"), ("train", "manifest.json", "figures.device.name"))),
    ("model", "Inference", "Inference compute evaluation", (("train", "manifest.json", "figures.flops_per_token"),)),

    ("downstream", "Distribution", "Release decision-making", "disclosures"),
    ("downstream", "Distribution", "Release process", "disclosures"),
    ("downstream", "Distribution", "Distribution channels", "disclosures"),
    ("downstream", "Distribution", "Products and services", "disclosures"),
    ("downstream", "Distribution", "Detection of machine-generated content", "disclosures"),
    ("downstream", "Distribution", "Model License", (("recipe", "", "release.license"), CARD)),
    ("downstream", "Distribution", "Terms of service", "disclosures"),
    ("downstream", "Usage policy", "Permitted and prohibited users", "disclosures"),
    ("downstream", "Usage policy", "Permitted, restricted, and prohibited uses", "intended_use"),
    ("downstream", "Usage policy", "Usage policy enforcement", "disclosures"),
    ("downstream", "Usage policy", "Justification for enforcement action", "disclosures"),
    ("downstream", "Usage policy", "Usage policy violation appeals mechanism", "disclosures"),
    ("downstream", "Model behavior policy", "Permitted, restricted, and prohibited model behaviors", "disclosures"),
    ("downstream", "Model behavior policy", "Model behavior policy enforcement", "disclosures"),
    ("downstream", "Model behavior policy", "Interoperability of usage and model behavior policies", "disclosures"),
    ("downstream", "User Interface", "User interaction with AI system", "disclosures"),
    ("downstream", "User Interface", "Usage disclaimers", "disclosures"),
    ("downstream", "User data protection", "User data protection policy", "disclosures"),
    ("downstream", "User data protection", "Permitted and prohibited use of user data", "disclosures"),
    ("downstream", "User data protection", "Usage data access protocol", "disclosures"),
    ("downstream", "Model Updates", "Versioning protocol", "disclosures"),
    ("downstream", "Model Updates", "Change log", "disclosures"),
    ("downstream", "Model Updates", "Deprecation policy", "disclosures"),
    ("downstream", "Feedback", "Feedback mechanism", "contact"),
    ("downstream", "Feedback", "Feedback summary", "disclosures"),
    ("downstream", "Feedback", "Government inquiries", "disclosures"),
    ("downstream", "Impact", "Monitoring mechanism", "disclosures"),
    ("downstream", "Impact", "Downstream applications", "disclosures"),
    ("downstream", "Impact", "Affected market sectors", "disclosures"),
    ("downstream", "Impact", "Affected individuals", "disclosures"),
    ("downstream", "Impact", "Usage reports", "disclosures"),
    ("downstream", "Impact", "Geographic statistics", "disclosures"),
    ("downstream", "Impact", "Redress mechanism", "disclosures"),
    ("downstream", "Documentation for Deployers", "Centralized documentation for downstream use", (CARD,)),
    ("downstream", "Documentation for Deployers", "Documentation for responsible downstream use", "disclosures"),
)


def key(indicator: str) -> str:
    """An indicator's key under `release.disclosures`: its name in snake case."""
    return re.sub(r"[^a-z0-9]+", "_", indicator.lower()).strip("_")


def statement_field(indicator: str, source: str) -> str:
    """The recipe field that states a statement indicator."""
    return f"release.disclosures.{key(indicator)}" if source == "disclosures" else f"release.{source}"


DISCLOSURE_KEYS = tuple(key(name) for _, _, name, source in INDICATORS if source == "disclosures")
