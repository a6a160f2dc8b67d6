"""A policy that samples steps from any OpenAI-compatible server (vLLM, llama.cpp, hosted APIs).

Standard library only (``urllib.request`` + ``json``). Each ``act`` sends one request per slot,
concurrently, asking for the text up to the next step delimiter.

Stop strings: OpenAI-style servers strip the matched ``stop`` string from the returned text.
The policy sends vLLM's ``include_stop_str_in_output: true`` (so vLLM keeps it) and otherwise
re-appends the delimiter itself. End of sequence is decided as ``finish_reason == "stop"`` with
the text not ending in the delimiter and the stop string not matched: vLLM says which it was
(``stop_reason`` is the matched string, or ``null`` for EOS), llama.cpp via ``stop_type``; a
server that says neither is assumed to have matched the stop string when it returned text,
and to have hit EOS when it returned nothing.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reasonenv.segmentation import Segmenter

_TOKEN_ID = re.compile(r"^token_id:(\d+)$")
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIHTTPError(RuntimeError):
    """A request to the server failed (HTTP error, timeout, or an unusable response).

    Attributes:
        url: The URL requested.
        status: The HTTP status, or None when no response arrived.
        body: The start of the response body ("" when none).
    """

    def __init__(self, message: str, url: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.url, self.status, self.body = url, status, body


class OpenAIHTTPPolicy:
    """Samples one reasoning step per slot from an OpenAI-compatible HTTP server.

    Completions mode (default) POSTs ``{base_url}/completions`` with the slot's full text so far
    (prompt + response so far) as ``prompt`` and the step delimiter as ``stop``. Chat mode POSTs
    ``{base_url}/chat/completions`` with the prompt as the user message and the response so far
    as an assistant prefix (vLLM's ``continue_final_message``); it is best-effort: servers
    differ in how they continue a final assistant message.

    With ``logprobs=True`` the policy asks for the sampled tokens' log-probs and, on vLLM, for
    tokens as ids (``return_tokens_as_token_ids``); when every token comes back as
    ``"token_id:N"`` the action carries ``token_ids`` and ``logprobs``, otherwise both are None
    (a text-only action). A slot's first observation is its prompt; later observations are
    ignored (the slot continues its own text).

    Args:
        base_url: The API root, e.g. ``"http://127.0.0.1:8000/v1"``.
        model: The served model name.
        api_key: Sent as a bearer token; default ``$OPENAI_API_KEY`` (none when unset).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_step_tokens: ``max_tokens`` of each request (``fixed:N`` splits use N).
        split: Step delimiter ``"\\n\\n"``/``"\\n"`` (sent as ``stop``) or ``"fixed:N"``.
        timeout: Seconds per request.
        max_retries: Retries of a failed request (timeouts, connection errors, HTTP 408/409/
            425/429/5xx) with exponential backoff; other HTTP errors raise at once.
        chat: Use the chat completions endpoint.
        logprobs: Ask for log-probs (and token ids on vLLM).
        vllm_extras: Send vLLM's extra fields (``include_stop_str_in_output``,
            ``return_tokens_as_token_ids``, chat continuation flags); turn off for strict
            servers that reject unknown fields.
        extra_body: More fields merged into every request body.
        max_concurrency: Most requests in flight at once.
        backoff: Seconds before the first retry (doubles each time).
        max_response_bytes: Longest response body read; longer ones raise.

    Example:
        >>> pol = OpenAIHTTPPolicy("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-0.5B-Instruct")
        >>> pol.completions_url
        'http://127.0.0.1:8000/v1/completions'
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_step_tokens: int = 256,
        split: str = "\n\n",
        timeout: float = 60.0,
        max_retries: int = 2,
        chat: bool = False,
        logprobs: bool = True,
        vllm_extras: bool = True,
        extra_body: dict[str, Any] | None = None,
        max_concurrency: int = 16,
        backoff: float = 0.5,
        max_response_bytes: int = 16 * 2**20,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_step_tokens < 1 or max_retries < 0 or max_concurrency < 1:
            raise ValueError("need max_step_tokens >= 1, max_retries >= 0, max_concurrency >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.temperature, self.top_p = temperature, top_p
        self.segmenter = Segmenter(split)
        self.max_step_tokens = self.segmenter.fixed or max_step_tokens
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.chat, self.logprobs, self.vllm_extras = chat, logprobs, vllm_extras
        self.extra_body = dict(extra_body or {})
        self.max_concurrency = max_concurrency
        self.max_response_bytes = max_response_bytes
        self._prompts: dict[int, str] = {}
        self._responses: dict[int, str] = {}
        self.requests_sent = 0

    def __repr__(self) -> str:  # never shows the API key
        return f"OpenAIHTTPPolicy({self.base_url!r}, {self.model!r}, chat={self.chat})"

    @property
    def completions_url(self) -> str:
        """The endpoint this policy POSTs to."""
        return f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"

    # -- Policy protocol --------------------------------------------------------------------
    def reset(self, slots: Sequence[int]) -> None:
        """Forget ``slots``: their next observation is a new prompt."""
        for s in slots:
            self._prompts.pop(s, None)
            self._responses.pop(s, None)

    def response(self, slot: int) -> str:
        """The response text ``slot`` has produced so far in its episode."""
        return self._responses.get(slot, "")

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[dict[str, Any]]:
        """Request one step per slot (concurrently) and return the actions in order."""
        if len(set(slots)) != len(slots):
            raise ValueError(f"act() got the same slot twice: {list(slots)}")
        for obs, slot in zip(observations, slots):
            if slot not in self._prompts:
                self._prompts[slot] = obs if isinstance(obs, str) else str(obs["text"])
                self._responses[slot] = ""
        slots = list(slots)
        if len(slots) <= 1:
            actions = [self._step(s) for s in slots]
        else:
            with ThreadPoolExecutor(min(self.max_concurrency, len(slots))) as pool:
                actions = list(pool.map(self._step, slots))
        for slot, a in zip(slots, actions):
            self._responses[slot] += a["text"]
        return actions

    # -- one request ------------------------------------------------------------------------
    def request_body(self, slot: int) -> dict[str, Any]:
        """The JSON body of ``slot``'s next request."""
        prompt, response = self._prompts[slot], self._responses[slot]
        delim = self.segmenter.delimiter
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_step_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        if delim is not None:
            body["stop"] = [delim]
        if self.chat:
            messages = [{"role": "user", "content": prompt}]
            if response:
                messages.append({"role": "assistant", "content": response})
            body["messages"] = messages
            if self.logprobs:
                body["logprobs"] = True
            if self.vllm_extras and response:
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        else:
            body["prompt"] = prompt + response
            if self.logprobs:
                body["logprobs"] = 1
        if self.vllm_extras:
            if delim is not None:
                body["include_stop_str_in_output"] = True
            if self.logprobs:
                body["return_tokens_as_token_ids"] = True
        body.update(self.extra_body)
        return body

    def _step(self, slot: int) -> dict[str, Any]:
        data = self._post(self.completions_url, self.request_body(slot))
        try:
            choice = data["choices"][0]
            if not isinstance(choice, dict):
                raise TypeError("choice is not an object")
            text = (choice.get("message") or {}).get("content") if self.chat else choice.get("text")
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise OpenAIHTTPError(
                f"POST {self.completions_url}: response has no choices[0] text ({e}): "
                f"{json.dumps(data)[:300]}", self.completions_url, 200, json.dumps(data)[:300]
            ) from None
        text = text if isinstance(text, str) else ""
        return self._action(choice, text)

    def _action(self, choice: dict[str, Any], text: str) -> dict[str, Any]:
        """Turn one returned choice into an action (stop string restored, EOS decided)."""
        delim = self.segmenter.delimiter
        finish = choice.get("finish_reason")
        eos = False
        if delim is not None and text.endswith(delim):
            pass  # the server kept the stop string (vLLM include_stop_str_in_output)
        elif finish == "stop":
            if delim is None:
                eos = True  # no stop string was sent: only EOS (or a stop token) stops early
            else:
                matched = _stop_matched(choice, delim)
                if matched is None:  # the server does not say: infer from the text
                    matched = bool(text)
                if matched:
                    text += delim  # re-append the stripped stop string
                else:
                    eos = True
        token_ids, logprobs = _parse_logprobs(choice.get("logprobs"), self.chat)
        return {"text": text, "token_ids": token_ids, "logprobs": logprobs, "eos": eos}

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON with retries; return the parsed JSON response."""
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last: OpenAIHTTPError | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            self.requests_sent += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = self._read(resp, url)
                    status = resp.status
            except urllib.error.HTTPError as e:
                snippet = _snippet(self._read(e, url, strict=False))
                last = OpenAIHTTPError(
                    f"POST {url} failed with HTTP {e.code} after {attempt + 1} attempt(s): "
                    f"{snippet!r}", url, e.code, snippet)
                if e.code not in _RETRY_STATUS:
                    raise last from None
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = OpenAIHTTPError(
                    f"POST {url} failed after {attempt + 1} attempt(s): {reason}", url)
                continue
            try:
                return json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                snippet = _snippet(raw)
                raise OpenAIHTTPError(
                    f"POST {url} returned malformed JSON (HTTP {status}, {e}): {snippet!r}",
                    url, status, snippet) from None
        assert last is not None
        raise last

    def _read(self, resp: Any, url: str, strict: bool = True) -> bytes:
        """Read at most ``max_response_bytes`` (raise when ``strict`` and there is more)."""
        try:
            raw = resp.read(self.max_response_bytes + 1)
        except (OSError, ValueError):
            return b""
        if len(raw) > self.max_response_bytes:
            if strict:
                raise OpenAIHTTPError(
                    f"POST {url}: response body exceeds max_response_bytes="
                    f"{self.max_response_bytes}", url, getattr(resp, "status", None))
            raw = raw[: self.max_response_bytes]
        return raw


def _stop_matched(choice: dict[str, Any], delim: str) -> bool | None:
    """Whether the server reports that the stop string (not EOS) ended the choice, if it says."""
    if "stop_reason" in choice:  # vLLM: the matched string / token id, None for EOS
        return choice["stop_reason"] == delim
    stop_type = choice.get("stop_type")  # llama.cpp native field: "word" / "eos" / "limit"
    if isinstance(stop_type, str):
        return stop_type == "word"
    return None


def _parse_logprobs(lp: Any, chat: bool) -> tuple[list[int] | None, list[float] | None]:
    """Token ids and log-probs from a choice's ``logprobs``, when tokens are ``"token_id:N"``."""
    if not isinstance(lp, dict):
        return None, None
    if chat:
        content = lp.get("content")
        if not isinstance(content, list):
            return None, None
        tokens = [c.get("token") if isinstance(c, dict) else None for c in content]
        values = [c.get("logprob") if isinstance(c, dict) else None for c in content]
    else:
        tokens, values = lp.get("tokens"), lp.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
        return None, None
    ids: list[int] = []
    for t in tokens:
        m = _TOKEN_ID.match(t) if isinstance(t, str) else None
        if m is None:
            return None, None
        ids.append(int(m.group(1)))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return ids, None
    return ids, [min(float(v), 0.0) for v in values]


def _snippet(raw: bytes, n: int = 300) -> str:
    return raw[:n].decode("utf-8", errors="replace")
