"""fastslow.serve: a real HTTP server on 127.0.0.1 serving a tiny random model."""

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fastslow.errors import FastSlowError
from fastslow.policy import Sampling, generate, load_model, load_tokenizer
from fastslow.serve import BackgroundServer, ChatServer


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


def test_concurrent_requests_all_answered(server):
    results = []

    def ask(i):
        body = {"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8, "temperature": 0}
        results.append(post(server.base_url + "/chat/completions", body)[0])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "Expecting"),
    ({"messages": []}, "messages must be a non-empty list"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "only n=1"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "streaming"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": 3}]}, "content must be"),
])
def test_bad_requests_get_400_with_a_message(server, body, fragment):
    status, reply = post(server.base_url + "/chat/completions", body)
    assert status == 400
    assert fragment in reply["error"]["message"]


def test_unknown_route_is_404(server):
    status, reply = post(server.base_url + "/completions", {"prompt": "x"})
    assert status == 404 and "no route" in reply["error"]["message"]


def test_busy_port_is_a_clear_error(server, model_dir):
    from fastslow.serve import ChatModel

    port = server.server.server_address[1]
    with pytest.raises(FastSlowError, match=f"--port: cannot listen on 127.0.0.1:{port}"):
        ChatServer(ChatModel(model_dir), "127.0.0.1", port)


def test_stop_closes_the_port(model_dir):
    running = BackgroundServer(model_dir)
    url = running.base_url
    running.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/models", timeout=5)
