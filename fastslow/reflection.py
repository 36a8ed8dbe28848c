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

import asyncio
import atexit
import concurrent.futures
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from urllib.parse import urlparse

from fastslow.config import ReflectionConfig
from fastslow.errors import FastSlowError
from fastslow.stopping import stopping
from fastslow.tasks.answers import strip_thinking

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm otherwise fetches a price list on import

DUMMY_API_KEY = "not-needed"  # local OpenAI-compatible servers ignore the key, but the clients require one


class ReflectionError(FastSlowError):
    """The reflection LM gave no usable answer after all retries."""


def pause(seconds: float) -> bool:
    """Sleep `seconds`, or less if the run starts stopping meanwhile (fastslow.stopping); False if it did."""
    end = time.monotonic() + seconds
    while not stopping():
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.25))
    return False


def one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def usable(answer: str | None) -> str:
    """The answer without thinking blocks and surrounding space; empty means no usable answer."""
    return strip_thinking(answer or "").strip()


class ReflectionLM:
    """Callable prompt -> answer with retries; subclasses implement `_complete` (one attempt) and `describe`."""

    remote = True  # a server's failure may pass: wait before retrying (a local model's retry needs no wait)

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
            if attempt + 1 < attempts and not pause(self.config.backoff_s * 2**attempt if self.remote else 0.0):
                break  # the run is stopping: no more retries
        raise self.failed(attempt + 1, failure)

    def failed(self, attempts: int, failure: str) -> ReflectionError:
        """The error a prompt ends in when its attempts are spent; `failure` is the last one's."""
        return ReflectionError(f"reflection LM {self.describe()} failed after {attempts} attempt(s): {failure}")

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


def answer_cap(config: ReflectionConfig) -> int:
    """Bytes of an HTTP answer worth reading: an answer of reflection.max_new_tokens tokens at the most characters
    per token the guards allow, each escaped in JSON (up to 6 bytes), plus the envelope."""
    from fastslow.guards import CHARS_PER_TOKEN

    return 6 * CHARS_PER_TOKEN * config.max_new_tokens + (64 << 10)


def api_key(config: ReflectionConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise FastSlowError(f"reflection.api_key_env: environment variable {config.api_key_env} is not set")
    return key


class RequestLoop:
    """The event loop every remote reflection request of this process runs on, in a daemon thread: one loop, so that
    the clients' connection pools and litellm's per-loop state (its clients, its logging worker) stay on it. Made on
    first use, and again in a forked process (the thread is not there); closed at exit."""

    loop: asyncio.AbstractEventLoop | None = None
    pid: int | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        if cls.pid != os.getpid():
            cls.loop, cls.pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(target=cls.loop.run_forever, name="reflection-requests", daemon=True).start()
            atexit.register(cls.close)
        return cls.loop

    @classmethod
    def close(cls) -> None:
        """At exit: cancel what still runs (litellm's logging worker, requests a stop cut short) and stop the loop,
        quietly: the interpreter's exit would print "Task was destroyed but it is pending!" or the errors of
        clean-ups that can no longer run ("cannot schedule new futures after interpreter shutdown")."""
        loop = cls.loop
        if loop is None or cls.pid != os.getpid() or not loop.is_running():
            return
        loop.set_exception_handler(lambda loop, context: None)

        async def cancel_the_rest():
            rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(timeout=1)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        loop.call_soon_threadsafe(loop.stop)


def within_deadline(coroutine, seconds: float):
    """The coroutine's result, or TimeoutError after `seconds`, from its first byte sent to its last received.

    The HTTP clients' own timeouts (httpx, under openai and litellm) bound each connect, write and read, so a server
    that sends a byte every few seconds never trips them. Here the request runs on the RequestLoop under
    `asyncio.wait_for`: at the deadline it is cancelled, which closes its connection. Callable from any thread
    (batched reflections); a stopping run (fastslow.stopping) cancels it at once."""

    async def bounded():
        try:
            return await asyncio.wait_for(coroutine, seconds)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no whole answer within reflection.timeout_s ({seconds:g} s)") from None

    future = asyncio.run_coroutine_threadsafe(bounded(), RequestLoop.get())
    while not future.done():  # waiting in steps: a stopping run does not wait for the deadline
        if stopping():
            future.cancel()  # cancels the request on the loop, closing its connection
            raise ReflectionError("the run is stopping")
        concurrent.futures.wait([future], timeout=0.25)
    return future.result()


class OpenAIReflection(ReflectionLM):
    """An OpenAI-compatible chat endpoint, through the `openai` client (its own retries off: ours apply), each request
    held to reflection.timeout_s as a whole (`within_deadline`)."""

    def __init__(self, config: ReflectionConfig):
        super().__init__(config)
        self.key = api_key(config) or DUMMY_API_KEY
        self.client, self.client_pid = None, None

    def _complete(self, prompt: str) -> str:
        if self.client_pid != os.getpid():  # one client per process, used on its RequestLoop
            from openai import AsyncOpenAI  # imported before the deadline starts: the first import takes seconds

            self.client = AsyncOpenAI(base_url=self.config.base_url, api_key=self.key, timeout=self.config.timeout_s,
                                      max_retries=0)
            self.client_pid = os.getpid()
        return within_deadline(self._request(prompt), self.config.timeout_s)

    async def _request(self, prompt: str) -> str:
        async with self.client.chat.completions.with_streaming_response.create(
            model=self.config.model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
        ) as response:  # read as it comes, up to a cap: a server that ignores max_tokens cannot fill the memory
            body, cap = bytearray(), answer_cap(self.config)
            async for chunk in response.iter_bytes():
                body += chunk
                if len(body) > cap:
                    raise ValueError(f"the answer passed {cap} bytes, far more than reflection.max_new_tokens "
                                     f"({self.config.max_new_tokens}) allows")
        return json.loads(body)["choices"][0]["message"]["content"]

    def __getstate__(self):
        return {**self.__dict__, "client": None, "client_pid": None}

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
        import litellm  # before the deadline starts: the first import takes seconds

        litellm.suppress_debug_info = True  # our one-line ReflectionError says what failed
        return within_deadline(self._request(prompt), self.config.timeout_s)

    async def _request(self, prompt: str) -> str:
        import litellm

        response = await litellm.acompletion(
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
    is its own starting policy (kind self) hands over the weights it already holds (`share_weights`). A retry samples
    again at once: the exponential backoff slept 14 s per empty answer, most of the fast phase's wall clock on a GPU
    (issue 23)."""

    remote = False

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

    def load(self) -> None:
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
            self.load()
        sampling = Sampling(
            max_new_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,  # 0: greedy
            chat_template_kwargs=self.chat_template_kwargs,
        )
        with self.weights() as model:
            return generate(model, self.tokenizer, [chat_messages(None, p) for p in prompts], sampling)

    def batch_complete(self, prompts: list[str]) -> list[str | ReflectionError]:
        """One batched generation; the prompts whose answers came back empty are sampled again together, up to
        `reflection.retries` times. Retried one by one, each empty answer cost a whole generation per attempt: on one
        H100 a Qwen3-1.7B-shaped reflection (256 tokens) took 11-13 s whatever its batch, and 16 empty answers
        turned one GEPA round's reflection into minutes (issue 23). A batch that raises falls back to one call,
        with retries, each."""
        try:
            answers = [usable(a) for a in self._generate(prompts)]
        except Exception:
            return [self.settle(prompt) for prompt in prompts]
        attempts, failure = 1, "empty answer"
        while attempts <= self.config.retries and not all(answers) and pause(0.0):  # pause: unless the run is stopping
            empty, attempts = [i for i, answer in enumerate(answers) if not answer], attempts + 1
            try:
                for i, answer in zip(empty, self._generate([prompts[i] for i in empty])):
                    answers[i] = usable(answer)
            except Exception as exc:
                failure = f"{type(exc).__name__}: {one_line(exc)}"
                break
        return [answer or self.failed(attempts, failure) for answer in answers]

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
