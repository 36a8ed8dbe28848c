"""fastslow.reflection against real HTTP servers on 127.0.0.1: `fastslow serve` on a tiny random model, and a
scripted fake endpoint (a test double) for failures, empty answers, timeouts and keys."""

import socket
import time
from contextlib import contextmanager

import pytest
from doubles import FakeChatEndpoint

from fastslow.config import ReflectionConfig
from fastslow.errors import FastSlowError
from fastslow.policy import Sampling, chat_messages, generate, load_model, load_tokenizer
from fastslow.reflection import ReflectionError, make_reflection_lm, strip_thinking
from fastslow.serve import BackgroundServer

PROMPT = "Improve this prompt: be concise."


@pytest.fixture(scope="module")
def model_dir(tiny_model_path):
    return tiny_model_path


@pytest.fixture(scope="module")
def server(model_dir):
    with BackgroundServer(model_dir) as running:
        yield running


@pytest.fixture(scope="module")
def greedy_answer(model_dir):
    """What the tiny model answers to PROMPT, generated directly: one user message, no system message."""
    text = generate(load_model(model_dir), load_tokenizer(model_dir), [chat_messages(None, PROMPT)],
                    Sampling(max_new_tokens=16, temperature=0))[0]
    assert text.strip(), "the tiny model's greedy answer should not be blank"
    return text.strip()


@pytest.fixture
def fake_endpoint():
    endpoints = []

    def start(*script):
        endpoints.append(FakeChatEndpoint(script))
        return endpoints[-1]

    yield start
    for endpoint in endpoints:
        endpoint.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def config(**fields) -> ReflectionConfig:
    return ReflectionConfig(**{"temperature": 0, "max_new_tokens": 16, "retries": 0, "backoff_s": 0.0, **fields})


# --- every kind gives the model's own answer ---------------------------------------------------------

def test_openai_kind_through_fastslow_serve(server, model_dir, greedy_answer):
    lm = make_reflection_lm(config(kind="openai", model="tiny-chat", base_url=server.base_url), model_dir)
    lm.check()
    assert lm(PROMPT) == greedy_answer
    assert server.base_url in lm.describe()


def test_litellm_kind_through_its_openai_compatible_provider(server, model_dir, greedy_answer):
    lm = make_reflection_lm(config(kind="litellm", model="openai/tiny-chat", base_url=server.base_url), model_dir)
    lm.check()
    assert lm(PROMPT) == greedy_answer


def test_local_and_self_kinds_sample_in_process(model_dir, greedy_answer):
    local = make_reflection_lm(config(kind="local", model=model_dir), policy_path="micro", device="cpu")
    frozen_policy = make_reflection_lm(config(kind="self"), policy_path=model_dir, device="cpu")
    assert local(PROMPT) == greedy_answer
    assert frozen_policy(PROMPT) == greedy_answer
    assert frozen_policy.describe() == f"self:{model_dir}"


def test_self_kind_in_a_run_samples_the_runs_starting_weights_without_loading_a_copy(model_dir, greedy_answer,
                                                                                      monkeypatch):
    """A LoRA run shares its policy with the adapters off: the starting weights, however far the adapters moved."""
    import torch
    from peft import LoraConfig, get_peft_model

    import fastslow.policy

    policy = get_peft_model(load_model(model_dir), LoraConfig(r=4, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)  # the adapted policy answers otherwise
    @contextmanager
    def adapters_off():
        with policy.disable_adapter():
            yield policy

    lm = make_reflection_lm(config(kind="self"), policy_path=model_dir, device="cpu")
    lm.share_weights(adapters_off)
    monkeypatch.setattr(fastslow.policy, "load_model", lambda *a, **k: pytest.fail("loaded a second copy"))
    assert lm(PROMPT) == greedy_answer
    assert generate(policy, load_tokenizer(model_dir), [chat_messages(None, PROMPT)],
                    Sampling(max_new_tokens=16, temperature=0))[0].strip() != greedy_answer


def test_batch_complete_answers_every_prompt_like_single_calls(server, model_dir, greedy_answer):
    """GEPA's batched proposals: the local kinds generate once for all prompts, the remote ones in parallel."""
    local = make_reflection_lm(config(kind="local", model=model_dir), policy_path="micro", device="cpu")
    remote = make_reflection_lm(config(kind="openai", model="tiny-chat", base_url=server.base_url), model_dir)
    for lm in (local, remote):
        answers = lm.batch_complete([PROMPT, PROMPT, "Write a better instruction."])
        assert len(answers) == 3 and answers[0] == answers[1] == greedy_answer and all(answers)


def test_batch_complete_settles_each_prompt_on_its_own(fake_endpoint, model_dir):
    endpoint = fake_endpoint((200, "", 0), (200, "```\nA better instruction.\n```", 0))  # the first reply is empty
    lm = make_reflection_lm(config(kind="openai", model="m", base_url=endpoint.base_url), model_dir)
    outcomes = lm.batch_complete([PROMPT, PROMPT])  # no retries: the prompt that got the empty reply failed
    assert sorted(type(o).__name__ for o in outcomes) == ["ReflectionError", "str"]
    assert "A better instruction." in next(o for o in outcomes if isinstance(o, str)) and len(endpoint.requests) == 2


def test_local_batch_retries_only_its_empty_answers_together(model_dir):
    """A local reflection LM samples the prompts whose answers came back empty again in one batch per attempt, not one
    generation each (a 1.7B-shaped reflector took 11-13 s per generation whatever its batch); a prompt still empty
    after `retries` fails alone, with the attempts it had."""
    lm = make_reflection_lm(config(kind="local", model=model_dir, retries=2), policy_path="micro", device="cpu")
    script = iter([["```a```", "", "<think>only thoughts"], ["```b```", "  "], [""]])
    batches = []

    def scripted_generate(prompts):  # the model's answers, scripted: each call is one batched generation
        batches.append(list(prompts))
        return next(script)

    lm._generate = scripted_generate
    outcomes = lm.batch_complete(["p0", "p1", "p2"])
    assert batches == [["p0", "p1", "p2"], ["p1", "p2"], ["p2"]]
    assert outcomes[:2] == ["```a```", "```b```"]
    assert isinstance(outcomes[2], ReflectionError) and "failed after 3 attempt(s): empty answer" in str(outcomes[2])


# --- answers: thinking stripped, empty answers retried ----------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("<think>plan it</think>\n```new```", "```new```"),
    ("</think>answer", "answer"),  # templates that open <think> inside the prompt
    ("<think>a</think>x<think>b</think> y ", "y"),
    ("<think>truncated mid-thought", ""),
    ("  plain  ", "plain"),
])
def test_strip_thinking(raw, clean):
    assert strip_thinking(raw).strip() == clean


def test_empty_and_failed_answers_are_retried_with_backoff(fake_endpoint, model_dir):
    endpoint = fake_endpoint((200, "<think>only thoughts</think>", 0), (500, None, 0), (200, "  ", 0),
                             (200, "<think>plan</think>\n```better prompt```", 0))
    lm = make_reflection_lm(config(kind="openai", model="m", base_url=endpoint.base_url, retries=3, backoff_s=0.05),
                            model_dir)
    start = time.monotonic()
    assert lm(PROMPT) == "```better prompt```"
    assert time.monotonic() - start >= 0.05 + 0.1 + 0.2  # three backoffs, doubling
    assert len(endpoint.requests) == 4
    assert endpoint.requests[0]["body"]["messages"] == [{"role": "user", "content": PROMPT}]
    assert endpoint.requests[0]["body"]["max_tokens"] == 16


def test_a_local_model_retries_an_empty_answer_at_once(model_dir, monkeypatch):
    """Backoff waits out a server's trouble; a local model's next sample needs no wait (it cost 14 s per empty answer
    of the micro reflector, most of a fast phase on a GPU)."""
    lm = make_reflection_lm(config(kind="local", model=model_dir, retries=3, backoff_s=5.0), "micro", device="cpu")
    answers = iter(["", "  ", "<think>only thoughts</think>", "```better prompt```"])
    monkeypatch.setattr(lm, "_complete", lambda prompt: next(answers))
    start = time.monotonic()
    assert lm(PROMPT) == "```better prompt```"
    assert time.monotonic() - start < 1.0  # three retries, none of them 5 + 10 + 20 s late


def test_exhausted_retries_raise_a_one_line_reflection_error(fake_endpoint, model_dir):
    endpoint = fake_endpoint((200, "", 0))
    lm = make_reflection_lm(config(kind="litellm", model="openai/m", base_url=endpoint.base_url, retries=2), model_dir)
    with pytest.raises(ReflectionError, match="failed after 3 attempt") as caught:
        lm(PROMPT)
    assert "empty answer" in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, FastSlowError)
    assert len(endpoint.requests) == 3


def test_timeout_counts_as_a_failure(fake_endpoint, model_dir):
    endpoint = fake_endpoint((200, "late", 3.0))
    lm = make_reflection_lm(config(kind="openai", model="m", base_url=endpoint.base_url, timeout_s=0.3), model_dir)
    start = time.monotonic()
    with pytest.raises(ReflectionError, match="Timeout"):
        lm(PROMPT)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("kind, model", [("openai", "m"), ("litellm", "openai/m")])
def test_a_server_that_trickles_a_valid_answer_fails_at_the_deadline(fake_endpoint, model_dir, kind, model):
    """One byte every 0.5 s: each read is quick, so per-read timeouts never fire; the answer would take minutes.
    timeout_s is one deadline for the whole request: each of the 2 attempts ends at ~1 s."""
    endpoint = fake_endpoint((200, "a valid answer", 0, 0.5))
    lm = make_reflection_lm(config(kind=kind, model=model, base_url=endpoint.base_url, timeout_s=1.0, retries=1),
                            model_dir)
    start = time.monotonic()
    with pytest.raises(ReflectionError, match=r"failed after 2 attempt.*within reflection.timeout_s \(1 s\)"):
        lm(PROMPT)
    assert 2.0 <= time.monotonic() - start < 4.0
    start = time.monotonic()
    answers = lm.batch_complete([PROMPT] * 3)  # concurrent requests: each with its own deadline, all at once
    assert all(isinstance(answer, ReflectionError) for answer in answers)
    assert time.monotonic() - start < 4.0


def test_an_answer_far_longer_than_max_tokens_allows_is_not_read_whole(fake_endpoint, model_dir):
    endpoint = fake_endpoint((200, "x" * (20 << 20), 0))  # 20 MB: a server that ignores max_tokens
    lm = make_reflection_lm(config(kind="openai", model="m", base_url=endpoint.base_url), model_dir)
    with pytest.raises(ReflectionError, match=r"the answer passed \d+ bytes, far more than reflection.max_new_tokens"):
        lm(PROMPT)


def test_api_key_comes_from_the_named_environment_variable(fake_endpoint, model_dir, monkeypatch):
    endpoint = fake_endpoint((200, "ok", 0))
    settings = config(kind="openai", model="m", base_url=endpoint.base_url, api_key_env="FASTSLOW_TEST_KEY")
    monkeypatch.delenv("FASTSLOW_TEST_KEY", raising=False)
    with pytest.raises(FastSlowError, match="reflection.api_key_env: environment variable FASTSLOW_TEST_KEY"):
        make_reflection_lm(settings, model_dir)
    monkeypatch.setenv("FASTSLOW_TEST_KEY", "sk-secret")
    assert make_reflection_lm(settings, model_dir)(PROMPT) == "ok"
    assert endpoint.requests[0]["headers"]["authorization"] == "Bearer sk-secret"


# --- unreachable endpoints and bad paths fail fast ----------------------------------------------------

@pytest.mark.parametrize("kind, model", [("openai", "m"), ("litellm", "openai/m")])
def test_unreachable_endpoint(kind, model, model_dir):
    url = closed_port_url()
    lm = make_reflection_lm(config(kind=kind, model=model, base_url=url, retries=1, backoff_s=0.05), model_dir)
    with pytest.raises(FastSlowError, match=f"^reflection.base_url: cannot reach {url}"):
        lm.check()
    with pytest.raises(ReflectionError, match="failed after 2 attempt"):
        lm(PROMPT)


def test_unknown_host_and_bad_url_fail_the_check(model_dir):
    unknown = make_reflection_lm(config(kind="openai", model="m", base_url="http://no-such-host.invalid:8000/v1"),
                                 model_dir)
    with pytest.raises(FastSlowError, match="reflection.base_url: cannot reach http://no-such-host.invalid"):
        unknown.check()
    not_a_url = make_reflection_lm(config(kind="openai", model="m", base_url="127.0.0.1:8000"), model_dir)
    with pytest.raises(FastSlowError, match="reflection.base_url: '127.0.0.1:8000' is not an http"):
        not_a_url.check()


def test_local_check_names_the_missing_path(tmp_path):
    lm = make_reflection_lm(config(kind="local", model=str(tmp_path / "nowhere")), policy_path="micro")
    with pytest.raises(FastSlowError, match="^reflection.model: .*nowhere does not exist"):
        lm.check()


def test_litellm_check_names_missing_provider_keys(model_dir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = make_reflection_lm(config(kind="litellm", model="openai/gpt-4.1-mini"), model_dir)
    with pytest.raises(FastSlowError, match="reflection.model: .*OPENAI_API_KEY"):
        lm.check()
