"""Test doubles: a scripted reflection LM, a scripted OpenAI-style endpoint, and a toy task whose reward varies even
for a random model.
They live in tests/ only; the product paths use real models and real tasks."""

from __future__ import annotations

import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastslow.tasks import Problem, Verdict


class ScriptedReflectionLM:
    """Answers a reflection prompt with a scripted instruction (in ``` fences, as GEPA expects), chosen by a
    hash of the prompt: the same prompt always gets the same answer, also in a resumed process."""

    def __init__(self, instructions=None, fail: bool = False):
        self.instructions = instructions or [f"Answer with few letters, version {i}." for i in range(1, 1000)]
        self.fail, self.prompts = fail, []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if self.fail:
            raise RuntimeError("scripted failure")
        return f"```\n{self.instructions[zlib.crc32(prompt.encode()) % len(self.instructions)]}\n```"


class EchoingReflectionLM(ScriptedReflectionLM):
    """Answers every reflection prompt with the instruction it was asked to improve (the prompt's first ``` block):
    a reflection LM that proposes nothing new."""

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return f"```\n{prompt.split('```')[1].strip()}\n```"


class BatchingScriptedReflectionLM(ScriptedReflectionLM):
    """The scripted LM with GEPA's batched entry point; records each batch's size. `fail_batches`: every
    batched call raises (GEPA then asks once per prompt)."""

    def __init__(self, fail_batches: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fail_batches, self.batch_sizes = fail_batches, []

    def batch_complete(self, prompts: list[str]) -> list[str]:
        self.batch_sizes.append(len(prompts))
        if self.fail_batches:
            raise RuntimeError("scripted batch failure")
        return [self(prompt) for prompt in prompts]


class SettlingScriptedReflectionLM(BatchingScriptedReflectionLM):
    """The batching scripted LM as fastslow's ReflectionLM kinds batch: every slot settled on its own, and every
    second prompt it is asked (in a batch or alone) ends in a ReflectionError."""

    def __call__(self, prompt: str) -> str:
        answer = super().__call__(prompt)
        if len(self.prompts) % 2 == 0:
            from fastslow.reflection import ReflectionError

            raise ReflectionError("scripted failure of one prompt")
        return answer

    def batch_complete(self, prompts: list[str]) -> list:
        self.batch_sizes.append(len(prompts))
        outcomes = []
        for prompt in prompts:
            try:
                outcomes.append(self(prompt))
            except Exception as error:
                outcomes.append(error)
        return outcomes


class ShortAnswerTask:
    """Reward = how short the completion is (1 for empty, 0 at >= 8 characters): a random tiny model's
    rewards vary, so groups have variance and RL moves the weights."""

    name = "short-answer"
    seed_prompt = "Answer."

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return [Problem(f"{split}-{seed}-{i}", "abcdefgh"[: 1 + (i + seed) % 8], "") for i in range(n)]

    def score(self, problem: Problem, completion: str) -> Verdict:
        reward = max(0.0, 1 - len(completion) / 8)
        return Verdict(reward, f"Expected a short answer; got {len(completion)} characters.")


class ConstantRewardTask(ShortAnswerTask):
    """Every completion scores 0.5: no group has reward variance, so RL has nothing to learn from."""

    name = "constant-reward"

    def score(self, problem: Problem, completion: str) -> Verdict:
        return Verdict(0.5, "Every answer scores the same.")


class FakeChatEndpoint:
    """Test double: an OpenAI-style endpoint that plays a script of (status, content, delay_s) replies, then
    repeats the last one, and records each request's headers and body. A fourth element, `byte_every_s`, trickles
    the reply: headers at once, then its body one byte at a time (a valid answer, which no read timeout catches)."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                status, content, delay, *trickle = endpoint.script.pop(0) if len(endpoint.script) > 1 else endpoint.script[0]
                time.sleep(delay)
                reply = {"error": {"message": "boom"}} if status != 200 else {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if trickle:
                        for i in range(len(data)):
                            self.wfile.write(data[i:i + 1])
                            self.wfile.flush()
                            time.sleep(trickle[0])
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class DyingReflectionLM(ScriptedReflectionLM):
    """The scripted LM, except that the first call ever made (across processes: `marker` records it) ends its
    process at once, as an out-of-memory kill would: a fast-phase worker that dies mid-cycle."""

    def __init__(self, marker, **kwargs):
        super().__init__(**kwargs)
        self.marker = str(marker)

    def __call__(self, prompt: str) -> str:
        import os

        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(9)
        return super().__call__(prompt)


class BrokenVerifierTask(ShortAnswerTask):
    """A task whose verifier raises on every completion: a fast phase that cannot run."""

    def score(self, problem: Problem, completion: str) -> Verdict:
        raise RuntimeError("scripted verifier failure")


class KnownRewardTask:
    """Four problems whose reward is fixed whatever the answer: p0 and p1 solved, p2 and p3 not. Accuracy 0.5 and
    no problem varied, for any model and prompt."""

    name = "known-reward"
    seed_prompt = "Answer."

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return [Problem(f"{split}-{i}", f"say {i}", "", {"solved": i % 4 < 2}) for i in range(n)]

    def score(self, problem: Problem, completion: str) -> Verdict:
        return Verdict(1.0 if problem.info["solved"] else 0.0, "Scored by the problem alone.")


class AlternatingRewardTask(KnownRewardTask):
    """Scores 1, 0, 1, 0, ... in the order it is asked: with an even number of samples per problem scored one
    problem after another, every problem's samples differ (accuracy 0.5, every problem varied)."""

    name = "alternating-reward"

    def __init__(self):
        self.calls = 0

    def score(self, problem: Problem, completion: str) -> Verdict:
        self.calls += 1
        return Verdict(float(self.calls % 2), "Scored by the call's parity.")


class VowelShareTask(ShortAnswerTask):
    """Reward = the share of the completion's letters that are vowels: continuous, so a real model's sampled
    sentences differ in reward and every group has variance, whatever their length."""

    name = "vowel-share"

    def score(self, problem: Problem, completion: str) -> Verdict:
        letters = [c for c in completion.lower() if c.isalpha()]
        reward = sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0
        return Verdict(reward, f"{reward:.0%} of the letters are vowels; more is better.")
