"""Teachers: an OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, TGI, a hosted API) or a
local model folder through fournil's own generator.

An endpoint is called with the standard library only. What may pass (a refused or reset
connection, a timeout, a 5xx/408/429 status, a body that is not a chat completion) is retried with
exponential back-off; what will not (a wrong address or model, a refused key) fails at once. Either
way the error is one line naming the endpoint.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from fournil.errors import FournilError

RETRIED_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class Answer:
    content: str
    finish_reason: str | None
    attempts: int
    completion_tokens: int | None


class TeacherError(FournilError):
    """The teacher did not answer a request; the message names the endpoint and the last failure."""


class EndpointTeacher:
    """POST {base_url}/chat/completions, one request per call; safe to call from several threads."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None, temperature: float, top_p: float,
                 max_tokens: int, timeout_s: float, retries: int, backoff_s: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.name = f"{model} at {base_url}"
        self.model, self.temperature, self.top_p, self.max_tokens = model, temperature, top_p, max_tokens
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise FournilError(f"teacher.api_key_env = {api_key_env!r}: that environment variable is not set; export it or remove the field")
            self.headers["Authorization"] = f"Bearer {key}"

    def complete(self, request_id: str, prompt: str, seed: int) -> Answer:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": self.temperature,
                           "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": seed, "n": 1}).encode()
        headers = {**self.headers, "X-Request-Id": request_id}
        jitter = random.Random(request_id)
        for attempt in range(1, self.retries + 2):
            try:
                return self._once(body, headers, attempt)
            except _Retry as failure:
                if attempt > self.retries:
                    raise TeacherError(f"teacher {self.url} did not answer request {request_id} after {attempt} attempts "
                                       f"({failure}); check that the server is up, or raise teacher.timeout_s / teacher.retries") from None
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + jitter.random() / 2))
        raise AssertionError("unreachable")

    def _once(self, body: bytes, headers: dict, attempt: int) -> Answer:
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:200].decode("utf-8", "replace").replace("\n", " ")
            if error.code in RETRIED_STATUS:
                raise _Retry(f"HTTP {error.code}") from None
            raise TeacherError(f"teacher {self.url} refused the request: HTTP {error.code} {detail}; check teacher.base_url, "
                               "teacher.model and teacher.api_key_env") from None
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise _Retry(f"timed out after {self.timeout_s:g} s" if isinstance(reason, TimeoutError | socket.timeout) else f"{reason}") from None
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, str):
                raise TypeError
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            raise _Retry(f"not a chat completion: {raw[:80]!r}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Answer(content, choice.get("finish_reason"), attempt, usage.get("completion_tokens"))


class _Retry(Exception):
    """A failure worth another attempt; its text says what happened."""


class LocalTeacher:
    """A fournil or transformers model folder, generating with its chat template; one request at a time."""

    def __init__(self, model_dir: str, temperature: float, top_p: float, max_tokens: int, device: str) -> None:
        from fournil.model.generate import Generator

        self.generator = Generator(model_dir, None, device)
        self.name = f"local model {model_dir}"
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.lock = threading.Lock()

    def complete(self, request_id: str, prompt: str, seed: int) -> Answer:
        from fournil.model.generate import Sampling

        prompt_text, stops = self.generator.chat_prompt([{"role": "user", "content": prompt}])
        settings = Sampling(self.max_tokens, self.temperature, 0, self.top_p, 1.0, stops, seed)
        with self.lock:
            text = "".join(self.generator.stream(prompt_text, settings))
        return Answer(text, None, 1, None)
