"""Multilingual self-instruct: new instruction data for `sft` from seed tasks and a teacher model.

PolyLM's MultiAlpaca method made reusable: seed tasks written in each language, a prompt in that
language, a teacher (any OpenAI-compatible endpoint or a local model folder), Self-Instruct's filters
made multilingual, and a resumable, append-only output in the `messages` format the sft stage reads.
"""
