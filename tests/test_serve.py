"""fastslow.serve: a real HTTP server (FastAPI + uvicorn) on 127.0.0.1 serving a tiny random model."""

import json
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fastslow.errors import FastSlowError
from fastslow.policy import Sampling, generate, load_model, load_tokenizer
from fastslow.serve import BackgroundServer


@pytest.fixture(scope="module")
def model_dir(tiny_model_path):
    return tiny_model_path


@pytest.fixture(scope="module")
def server(model_dir):
    with BackgroundServer(model_dir) as running:
        yield running


def post(url, body: bytes | dict):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_models_lists_the_served_model(server, model_dir):
    with urllib.request.urlopen(server.base_url + "/models", timeout=10) as response:
        body = json.load(response)
    assert [m["id"] for m in body["data"]] == [Path(model_dir).name]


def test_greedy_completion_matches_direct_generation(server, model_dir):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hello"}]
    status, body = post(server.base_url + "/chat/completions",
                        {"model": "tiny-chat", "messages": messages, "max_tokens": 12, "temperature": 0})
    assert status == 200
    expected = generate(load_model(model_dir), load_tokenizer(model_dir), [messages],
                        Sampling(max_new_tokens=12, temperature=0))[0]
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected}
    tokenizer = load_tokenizer(model_dir)
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert body["usage"]["prompt_tokens"] == len(prompt_ids)
    assert body["usage"]["completion_tokens"] == len(expected) <= 12  # char-level tokenizer: a token per character
    assert body["usage"]["total_tokens"] == len(prompt_ids) + len(expected)
    assert choice["finish_reason"] == ("length" if len(expected) == 12 else "stop")


def test_seeded_sampling_is_reproducible_and_content_parts_are_joined(server):
    def ask(content, seed):
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": 16, "temperature": 1.0, "seed": seed}
        return post(server.base_url + "/chat/completions", body)[1]["choices"][0]["message"]["content"]

    parts = [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]
    assert ask("hello", 7) == ask(parts, 7)
    samples = {ask("hello", seed) for seed in range(4)}
    assert len(samples) > 1  # temperature 1 on a random model: different seeds, different texts


def burst(base_url, n=100):
    """n requests at once, each on its own connection: (HTTP status, body) of each; a reset connection raises."""
    def ask(i):
        body = {"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8, "temperature": 0}
        return post(base_url + "/chat/completions", body)

    start = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(ask, range(n)))
    return answers, time.monotonic() - start


def test_a_hundred_concurrent_requests_are_all_answered_in_batches(server, model_dir):
    answers, seconds = burst(server.base_url)
    assert [status for status, _ in answers] == [200] * 100
    assert seconds < 120
    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir)
    alone = generate(model, tokenizer, [[{"role": "user", "content": "q7"}]], Sampling(max_new_tokens=8, temperature=0))
    assert answers[7][1]["choices"][0]["message"]["content"] == alone[0]  # batching left each answer its own


def test_a_full_queue_answers_503_never_a_reset(model_dir):
    with BackgroundServer(model_dir, max_batch=2, max_queue=3) as small:
        answers, _ = burst(small.base_url)
    statuses = [status for status, _ in answers]
    assert set(statuses) == {200, 503} and statuses.count(200) >= 3
    busy = next(body for status, body in answers if status == 503)
    assert "retry" in busy["error"]["message"]


def test_max_tokens_is_capped_by_the_context(server, model_dir):
    context = load_model(model_dir).config.max_position_embeddings
    status, body = post(server.base_url + "/chat/completions",  # a prompt that leaves a few tokens of room
                        {"messages": [{"role": "user", "content": "x" * (context - 32)}], "max_tokens": 10**9})
    assert status == 200
    assert 0 < body["usage"]["completion_tokens"] and body["usage"]["total_tokens"] <= context
    status, body = post(server.base_url + "/chat/completions",
                        {"messages": [{"role": "user", "content": "x" * context}], "max_tokens": 4})
    assert status == 400 and f"the model's context is {context}" in body["error"]["message"]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "Expecting"),
    ({"messages": []}, "messages must be a non-empty list"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "only n=1"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "streaming"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": 3}]}, "content must be"),
    (b"[" * 100_000 + b"]" * 100_000, "recursion"),  # nested too deeply for json: a 400, not a 500
])
def test_bad_requests_get_400_with_a_message(server, body, fragment):
    status, reply = post(server.base_url + "/chat/completions", body)
    assert status == 400
    assert fragment in reply["error"]["message"]


def test_unknown_route_is_404(server):
    status, reply = post(server.base_url + "/completions", {"prompt": "x"})
    assert status == 404 and "no route" in reply["error"]["message"]


def test_busy_port_is_a_clear_error(server, model_dir):
    with pytest.raises(FastSlowError, match=f"--port: cannot listen on 127.0.0.1:{server.port}"):
        BackgroundServer(model_dir, port=server.port)


def test_stop_closes_the_port(model_dir):
    running = BackgroundServer(model_dir)
    url = running.base_url
    running.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/models", timeout=5)


def raw_request(server, headers: dict, body_parts, timeout=30) -> tuple[int, dict, float]:
    """POST /v1/chat/completions by hand, sending `body_parts` one after another (stopping if the server has
    answered and closed); returns (status, reply, seconds until the reply)."""
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n"
                     .encode())
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = b""
        while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", response.lower()).group(1)):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    head, _, reply = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(reply), time.monotonic() - start


def small_request_seconds(server) -> float:
    start = time.monotonic()
    status, _ = post(server.base_url + "/chat/completions",
                     {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0})
    assert status == 200
    return time.monotonic() - start


def test_a_20mb_request_is_413_unread_and_does_not_stall_a_small_one(server):
    normal = min(small_request_seconds(server) for _ in range(3))
    twenty_mb = 20 << 20
    with ThreadPoolExecutor(3) as pool:
        declared = pool.submit(raw_request, server, {"Content-Length": twenty_mb},  # sends 1 MB, then waits
                               [b'{"messages": [{"role": "user", "content": "' + b"x" * (1 << 20)])
        chunked = pool.submit(raw_request, server, {"Transfer-Encoding": "chunked"},  # no length: counted as it comes
                              (f"{1 << 20:x}\r\n".encode() + b"x" * (1 << 20) + b"\r\n" for _ in range(20)))
        time.sleep(0.2)
        beside = small_request_seconds(server)
        (status, reply, seconds), (chunked_status, chunked_reply, _) = declared.result(), chunked.result()
    assert status == 413 and f"the request body is {twenty_mb} bytes" in reply["error"]["message"]
    assert seconds < 5  # from its Content-Length, not after reading 20 MB
    assert chunked_status == 413 and "passed the server's cap of 8388608 bytes" in chunked_reply["error"]["message"]
    assert beside < 3 * normal + 1.0, (beside, normal)


def test_a_prompt_longer_than_the_context_could_hold_is_400_without_tokenising(server, model_dir):
    context = load_model(model_dir).config.max_position_embeddings
    normal = min(small_request_seconds(server) for _ in range(3))
    body = json.dumps({"messages": [{"role": "user", "content": "y" * (7 << 20)}]}).encode()  # under the body cap
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(post, server.base_url + "/chat/completions", body)
        beside = small_request_seconds(server)
        status, reply = big.result()
    assert status == 400 and f"is {7 << 20} characters, more than the model's context of {context}" in \
        reply["error"]["message"]
    assert beside < 3 * normal + 1.0, (beside, normal)
