"""The reflection LM: the frozen model GEPA asks to rewrite a prompt after reading rollouts and feedback.

GEPA calls it as `prompt: str -> str`. Four kinds (fastslow.config.ReflectionConfig):
  litellm  any litellm model string ("openai/gpt-4.1-mini", "anthropic/...", "hosted_vllm/...")
  openai   an OpenAI-compatible endpoint (`base_url`), e.g. a `fastslow serve` or vLLM server
  local    a Hugging Face model directory or hub id, sampled in this process
  self     `local` on the run's starting policy (frozen: it never sees the RL updates); in a run, the starting
           weights the run already holds (LoRA with adapters off, the reference model, the frozen base)

Every kind retries failed or empty answers with exponential backoff, strips <think> blocks, and finally
raises ReflectionError, which the loop catches (a failed reflection keeps the old population; the run goes on).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from urllib.parse import urlparse

from fastslow.config import ReflectionConfig
from fastslow.errors import FastSlowError
from fastslow.tasks.answers import strip_thinking

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm otherwise fetches a price list on import

DUMMY_API_KEY = "not-needed"  # local OpenAI-compatible servers ignore the key, but the clients require one


class ReflectionError(FastSlowError):
    """The reflection LM gave no usable answer after all retries."""


def one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def usable(answer: str | None) -> str:
    """The answer without thinking blocks and surrounding space; empty means no usable answer."""
    return strip_thinking(answer or "").strip()


class ReflectionLM:
    """Callable prompt -> answer with retries; subclasses implement `_complete` (one attempt) and `describe`."""

    def __init__(self, config: ReflectionConfig):
        self.config = config

    def __call__(self, prompt: str) -> str:
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                answer = usable(self._complete(prompt))
                if answer:
                    return answer
                failure = "empty answer"
            except Exception as exc:  # network, timeout, server or generation error: all worth a retry
                failure = f"{type(exc).__name__}: {one_line(exc)}"
            if attempt + 1 < attempts:
                time.sleep(self.config.backoff_s * 2**attempt)
        raise ReflectionError(f"reflection LM {self.describe()} failed after {attempts} attempt(s): {failure}")

    def batch_complete(self, prompts: list[str]) -> list[str | ReflectionError]:
        """Several reflections at once (GEPA's batched proposals), each slot the answer or the ReflectionError its
        prompt ended in (after its retries), so one failure costs one proposal: remote kinds send them concurrently;
        local kinds override this with one batched generation."""
        with ThreadPoolExecutor(max(1, min(8, len(prompts)))) as pool:
            return list(pool.map(self.settle, prompts))

    def settle(self, prompt: str) -> str | ReflectionError:
        """The answer, or the ReflectionError the call ended in."""
        try:
            return self(prompt)
        except ReflectionError as error:
            return error

    def _complete(self, prompt: str) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Fail fast (FastSlowError) when the reflection LM obviously cannot work; cheap, no generation."""


def check_reachable(base_url: str, timeout_s: float) -> None:
    """Open (and close) a TCP connection to the endpoint: catches refused connections and unknown hosts."""
    url = urlparse(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise FastSlowError(f"reflection.base_url: {base_url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000/v1")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=min(timeout_s, 10.0)).close()
    except OSError as exc:
        raise FastSlowError(f"reflection.base_url: cannot reach {base_url} ({one_line(exc)}); is the server running?") from None


def api_key(config: ReflectionConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise FastSlowError(f"reflection.api_key_env: environment variable {config.api_key_env} is not set")
    return key


class OpenAIReflection(ReflectionLM):
    """An OpenAI-compatible chat endpoint, through the `openai` client (its own retries off: ours apply)."""

    def __init__(self, config: ReflectionConfig):
        super().__init__(config)
        from openai import OpenAI

        self.client = OpenAI(
            base_url=config.base_url, api_key=api_key(config) or DUMMY_API_KEY, timeout=config.timeout_s, max_retries=0
        )

    def _complete(self, prompt: str) -> str:
        response = self.client.chat.completions.create(
            model=self.config.model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
        )
        return response.choices[0].message.content

    def describe(self) -> str:
        return f"openai:{self.config.model}@{self.config.base_url}"

    def check(self) -> None:
        check_reachable(self.config.base_url, self.config.timeout_s)


class LiteLLMReflection(ReflectionLM):
    """Any provider litellm knows; `base_url` (optional) is passed as litellm's api_base."""

    def __init__(self, config: ReflectionConfig):
        super().__init__(config)
        self.api_key = api_key(config) or (DUMMY_API_KEY if config.base_url else None)

    def _complete(self, prompt: str) -> str:
        import litellm

        litellm.suppress_debug_info = True  # our one-line ReflectionError says what failed
        response = litellm.completion(
            model=self.config.model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
            timeout=self.config.timeout_s,
            api_base=self.config.base_url,
            api_key=self.api_key,
            num_retries=0,
        )
        return response.choices[0].message.content

    def describe(self) -> str:
        return f"litellm:{self.config.model}" + (f"@{self.config.base_url}" if self.config.base_url else "")

    def check(self) -> None:
        if self.config.base_url:
            check_reachable(self.config.base_url, self.config.timeout_s)
            return
        if self.api_key is None:
            import litellm

            missing = litellm.validate_environment(model=self.config.model).get("missing_keys") or []
            if missing:
                raise FastSlowError(
                    f"reflection.model: litellm model {self.config.model!r} needs environment variable(s) "
                    f"{', '.join(missing)} (or name one in reflection.api_key_env)"
                )


class LocalReflection(ReflectionLM):
    """A Hugging Face model sampled in this process; loaded on first use, never trained. A run whose reflection
    is its own starting policy (kind self) hands over the weights it already holds (`share_weights`)."""

    def __init__(self, config: ReflectionConfig, path: str, field: str, device=None, dtype: str = "auto",
                 chat_template_kwargs: dict | None = None):
        super().__init__(config)
        self.path, self.field = path, field  # field: the config key that named the path, for error messages
        self.device, self.dtype, self.chat_template_kwargs = device, dtype, chat_template_kwargs
        self.weights: Callable[[], AbstractContextManager] | None = None  # yields the module to sample from
        self.tokenizer = None

    def share_weights(self, weights: Callable[[], AbstractContextManager]) -> None:
        """Sample from the module `weights()` yields instead of loading a copy of `path`."""
        self.weights = weights

    def _load(self) -> None:
        import torch

        from fastslow.policy import load_model, load_tokenizer

        self.tokenizer = load_tokenizer(self.path)
        if self.weights is None:
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = load_model(self.path, self.dtype, device).eval().requires_grad_(False)
            self.weights = lambda: nullcontext(model)

    def _complete(self, prompt: str) -> str:
        return self._generate([prompt])[0]

    def _generate(self, prompts: list[str]) -> list[str]:
        from fastslow.policy import Sampling, chat_messages, generate

        if self.tokenizer is None:
            self._load()
        sampling = Sampling(
            max_new_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,  # 0: greedy
            chat_template_kwargs=self.chat_template_kwargs,
        )
        with self.weights() as model:
            return generate(model, self.tokenizer, [chat_messages(None, p) for p in prompts], sampling)

    def batch_complete(self, prompts: list[str]) -> list[str | ReflectionError]:
        """One batched generation; an empty answer (or a failed batch) falls back to one call, with retries, each."""
        try:
            answers = [usable(a) for a in self._generate(prompts)]
        except Exception:
            answers = [""] * len(prompts)
        return [answer or self.settle(prompt) for prompt, answer in zip(prompts, answers)]

    def describe(self) -> str:
        return f"{self.config.kind}:{self.path}"

    def check(self) -> None:
        from fastslow.models import resolve_model_path

        resolve_model_path(self.path, self.field)


def make_reflection_lm(
    config: ReflectionConfig,
    policy_path: str,
    *,
    device=None,
    dtype: str = "auto",
    chat_template_kwargs: dict | None = None,
) -> ReflectionLM:
    """The reflection LM `config` names. `policy_path` is the run's model.path (used by kind "self");
    device/dtype/chat_template_kwargs apply to the in-process kinds (local, self); device None: cuda if available.
    Local timeouts are not enforced: generation is bounded by reflection.max_new_tokens."""
    if config.kind == "openai":
        return OpenAIReflection(config)
    if config.kind == "litellm":
        return LiteLLMReflection(config)
    if config.kind == "local":
        return LocalReflection(config, config.model, "reflection.model", device, dtype, chat_template_kwargs)
    return LocalReflection(config, policy_path, "model.path", device, dtype, chat_template_kwargs)
