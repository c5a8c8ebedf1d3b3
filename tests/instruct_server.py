"""A scripted OpenAI-compatible chat server on 127.0.0.1, for the self-instruct tests and benchmark.

By default request `fr-000012` is answered with tasks made of sentences 12·n … 12·n+n−1 of the
shipped French sample (each instruction quotes one sentence, its output is the next), in the
language pack's own layout, so they pass the filters; a script can replace any attempt of any
request by another answer, an HTTP status, a garbage body, a dropped connection or a delay.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fournil.compressed import byte_lines
from fournil.instruct.languages import load_pack

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
ASK = {"en": "Explain in your own words what this sentence means:", "fr": "Explique avec tes propres mots ce que veut dire cette phrase :",
       "de": "Erkläre mit eigenen Worten, was dieser Satz bedeutet:", "es": "Explica con tus propias palabras qué quiere decir esta frase:",
       "it": "Spiega con parole tue che cosa significa questa frase:", "pt": "Explique com suas palavras o que esta frase quer dizer:"}


@dataclass
class Reply:
    """What the server does for one attempt: answer `content`, or fail with `status`, `garbage`, `close` or `delay` first."""

    content: str | None = None
    status: int | None = None
    garbage: bool = False
    close: bool = False
    delay: float = 0.0


@lru_cache(maxsize=8)
def sentence_pairs(lang: str) -> tuple[tuple[str, str], ...]:
    """(sentence, next sentence) of the wesnoth sample: prose of 10–30 words, no markup."""
    pairs = []
    for line in byte_lines(SAMPLE / lang / "wesnoth.jsonl.zst"):
        text = json.loads(line)["text"]
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if 10 <= len(s.split()) <= 30 and not re.search(r"[<>{}\[\]=/_|@#]", s)]
        pairs += zip(sentences[::2], sentences[1::2])
    return tuple(pairs)


@lru_cache(maxsize=8)
def _pack(lang: str):
    return load_pack(lang)


def task_answer(request_id: str, first: int, count: int) -> str:
    lang, index = request_id.rsplit("-", 1)
    pack, pairs = _pack(lang), sentence_pairs(lang)
    start = int(index) * count
    return "\n\n".join(pack.block(first + i, f"{ASK[lang]} « {pairs[(start + i) % len(pairs)][0]} »", "", pairs[(start + i) % len(pairs)][1])
                       for i in range(count))


class FakeTeacher:
    """`with FakeTeacher(script) as t:` serves at t.url; t.calls counts attempts and t.answered successes per request id."""

    def __init__(self, script=None, delay: float = 0.0, seed_examples: int = 3, new_tasks: int = 5) -> None:
        self.script, self.delay, self.first, self.count = script, delay, seed_examples + 1, new_tasks
        self.calls: Counter = Counter()
        self.answered: Counter = Counter()
        self.lock = threading.Lock()
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rid = self.headers.get("X-Request-Id", "")
                with teacher.lock:
                    teacher.calls[rid] += 1
                    attempt = teacher.calls[rid]
                reply = (teacher.script(rid, attempt, body) if teacher.script else None) or Reply()
                time.sleep(reply.delay or teacher.delay)
                if reply.close:
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.status:
                    self._send(reply.status, b'{"error": {"message": "scripted failure"}}')
                    return
                if reply.garbage:
                    self._send(200, b"<html>502 Bad Gateway</html>")
                    return
                content = reply.content if reply.content is not None else task_answer(rid, teacher.first, teacher.count)
                with teacher.lock:
                    teacher.answered[rid] += 1
                self._send(200, json.dumps({"id": rid, "object": "chat.completion", "model": body["model"], "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"completion_tokens": len(content.split())}}).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed or gave up
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeTeacher:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
