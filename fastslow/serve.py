"""`fastslow serve MODEL_DIR`: a local Hugging Face model behind a minimal OpenAI-compatible API.

Enough for a run to use a local model (e.g. the micro model) as its reflection LM through
`reflection.kind: openai`: POST /v1/chat/completions (messages, max_tokens, temperature, top_p, seed, n=1)
and GET /v1/models. No streaming, no tools. One request generates at a time (a lock around the model);
the request's "model" field is not checked, so any name works.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fastslow.errors import FastSlowError

DEFAULT_MAX_TOKENS = 256


class BadRequest(Exception):
    """A request the server answers with HTTP 400 and this message."""


class ChatModel:
    """The served model: OpenAI-style chat requests in, OpenAI-style responses out."""

    def __init__(self, model_dir: str, device=None):
        import torch

        from fastslow.policy import load_model, load_tokenizer, resolve_model_path

        self.name = "micro" if model_dir == "micro" else Path(resolve_model_path(model_dir)).name
        self.tokenizer = load_tokenizer(model_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(model_dir, "auto", device).eval().requires_grad_(False)
        self.lock = threading.Lock()  # one generation at a time: the model is shared by all handler threads

    def complete(self, request: dict) -> dict:
        import torch

        from fastslow.policy import Sampling, generate

        messages = parse_messages(request.get("messages"))
        if request.get("n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        if request.get("stream"):
            raise BadRequest("streaming is not supported")
        max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        temperature = request.get("temperature", 1.0)
        top_p = request.get("top_p", 1.0)
        if not (isinstance(max_tokens, int) and max_tokens > 0):
            raise BadRequest("max_tokens must be a positive integer")
        if not (isinstance(temperature, (int, float)) and temperature >= 0):
            raise BadRequest("temperature must be a number >= 0")
        if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise BadRequest("top_p must be a number in (0, 1]")
        seed = request.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise BadRequest("seed must be an integer")
        sampling = Sampling(max_new_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p))
        with self.lock:
            if seed is not None:
                torch.manual_seed(seed)
            text = generate(self.model, self.tokenizer, [messages], sampling)[0]
        # Token counts by re-tokenising the texts: exact for the prompt, near-exact for the completion.
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        completion_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if completion_tokens >= max_tokens else "stop",
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": 0, "owned_by": "fastslow"}]}


def parse_messages(messages) -> list[dict[str, str]]:
    """OpenAI messages -> plain {role, content} dicts; content may be a string or a list of text parts."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {role, content} objects")
    parsed = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("each message must be an object with a role and content")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise BadRequest(f"message content must be a string or a list of text parts (role {message['role']})")
        parsed.append({"role": message["role"], "content": content})
    return parsed


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self.reply(200, self.server.chat_model.models())
        else:
            self.error(404, f"no route GET {self.path}")

    def do_POST(self):
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self.error(404, f"no route POST {self.path}")
        try:
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit():
                raise BadRequest("a Content-Length header is required")
            request = json.loads(self.rfile.read(int(length)) or b"null")
            if not isinstance(request, dict):
                raise BadRequest("the body must be a JSON object")
            self.reply(200, self.server.chat_model.complete(request))
        except (BadRequest, json.JSONDecodeError) as exc:
            self.error(400, str(exc))
        except Exception as exc:  # a generation failure is the server's fault, not the client's
            self.error(500, f"{type(exc).__name__}: {exc}")

    def error(self, status: int, message: str):
        kind = "invalid_request_error" if status < 500 else "server_error"
        self.reply(status, {"error": {"message": message, "type": kind}})

    def reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, chat_model: ChatModel, host: str, port: int, verbose: bool = False):
        self.chat_model, self.verbose = chat_model, verbose
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            raise FastSlowError(f"--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class BackgroundServer:
    """A ChatServer running in a daemon thread (tests, notebooks): `with BackgroundServer(dir) as s: s.base_url`."""

    def __init__(self, model_dir: str, host: str = "127.0.0.1", port: int = 0):
        self.server = ChatServer(ChatModel(model_dir), host, port)  # port 0: a free port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)  # quick stop()
        self.thread.start()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `model_dir` until interrupted (Ctrl-C)."""
    server = ChatServer(ChatModel(model_dir), host, port, verbose=True)
    print(f"serving {server.chat_model.name} at {server.base_url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
