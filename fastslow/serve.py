"""`fastslow serve MODEL_DIR`: a local Hugging Face model behind an OpenAI-compatible API (FastAPI + uvicorn).

Enough for a run to use a local model (e.g. the micro model) as its reflection LM through
`reflection.kind: openai`: POST /v1/chat/completions (messages, max_tokens, temperature, top_p, seed, n=1)
and GET /v1/models. No streaming, no tools; the request's "model" field is not checked, so any name works.

Requests wait in a bounded queue. One worker takes everything waiting and generates each group of requests that
share their sampling settings in one batched `generate` call (a seeded request alone, so that its seed alone
decides its text). A full queue is answered 503 with Retry-After, never left to the socket to drop, and
max_tokens is capped by the room the prompt leaves in the model's context.

No request can stall the others: a body over `--max-body-mb` is answered 413 from its Content-Length (or as soon
as a body without one passes the cap), before it is read whole; a prompt longer in characters than the context
could hold is a 400 before it is tokenised; parsing and tokenising run in a thread, never on the event loop.
"""

import asyncio  # no `from __future__ import annotations`: FastAPI reads the route signatures' types at run time
import json
import socket
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastslow.errors import FastSlowError

DEFAULT_MAX_TOKENS = 256
MAX_BATCH = 16  # requests generated together
MAX_QUEUE = 256  # requests waiting; more are answered 503
MAX_BODY_MB = 8  # a request body larger than this is answered 413 unread: 2M tokens of text, past any context


class TooLarge(Exception):
    """A request body over the cap: HTTP 413."""


class BadRequest(Exception):
    """A request the server answers with HTTP 400 and this message."""


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    prompt_tokens: int
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None

    @property
    def batch_key(self) -> tuple:
        """Requests with equal keys are generated in one call; a seeded one only with itself."""
        return (self.max_tokens, self.temperature, self.top_p) if self.seed is None else (id(self),)


class ChatModel:
    """The served model: OpenAI-style chat requests in, OpenAI-style responses out."""

    def __init__(self, model_dir: str, device=None):
        import torch

        from fastslow.guards import context_length
        from fastslow.models import display_name
        from fastslow.policy import load_model, load_tokenizer

        self.name = display_name(model_dir)
        self.tokenizer = load_tokenizer(model_dir)
        # parsing counts prompt tokens in request threads while generation pads batches in the worker's: a fast
        # tokenizer changing its padding in one thread while another encodes fails ("Already borrowed"), so each
        # has its own, and the counters take turns
        self.counter, self.counting = load_tokenizer(model_dir), threading.Lock()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(model_dir, "auto", device).eval().requires_grad_(False)
        self.context = context_length(self.model.config)

    def parse_body(self, body: bytes) -> "ChatRequest":
        """A request body (JSON bytes) as a ChatRequest; BadRequest for anything the server answers 400."""
        try:
            request = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...]]]]
            raise BadRequest(str(exc)) from None
        if not isinstance(request, dict):
            raise BadRequest("the body must be a JSON object")
        return self.parse(request)

    def parse(self, request: dict) -> ChatRequest:
        """Validate an OpenAI-style request body; max_tokens is capped by the room left in the context."""
        from fastslow.guards import CHARS_PER_TOKEN

        messages = parse_messages(request.get("messages"))
        if request.get("n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        if request.get("stream"):
            raise BadRequest("streaming is not supported")
        max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        temperature = request.get("temperature", 1.0)
        top_p = request.get("top_p", 1.0)
        seed = request.get("seed")
        if not (isinstance(max_tokens, int) and max_tokens > 0):
            raise BadRequest("max_tokens must be a positive integer")
        if not (isinstance(temperature, (int, float)) and 0 <= temperature < float("inf")):
            raise BadRequest("temperature must be a finite number >= 0")
        if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise BadRequest("top_p must be a number in (0, 1]")
        if seed is not None and not isinstance(seed, int):
            raise BadRequest("seed must be an integer")
        characters = sum(len(m["content"]) for m in messages)
        if self.context is not None and characters > CHARS_PER_TOKEN * self.context:  # no need to tokenise it
            raise BadRequest(f"the prompt is {characters} characters, more than the model's context of "
                             f"{self.context} tokens holds")
        with self.counting:
            prompt = self.counter.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompt_tokens = len(self.counter(prompt, add_special_tokens=False)["input_ids"])
        if self.context is not None:
            if prompt_tokens >= self.context:
                raise BadRequest(f"the prompt is {prompt_tokens} tokens; the model's context is {self.context}")
            max_tokens = min(max_tokens, self.context - prompt_tokens)
        return ChatRequest(messages, prompt_tokens, max_tokens, float(temperature), float(top_p), seed)

    def generate(self, requests: list[ChatRequest]) -> list[str]:
        """One batched generation for requests that share a batch key."""
        import torch

        from fastslow.policy import Sampling, generate

        first = requests[0]
        if first.seed is not None:
            torch.manual_seed(first.seed)
        sampling = Sampling(max_new_tokens=first.max_tokens, temperature=first.temperature, top_p=first.top_p)
        return generate(self.model, self.tokenizer, [r.messages for r in requests], sampling)

    def response(self, request: ChatRequest, text: str) -> dict:
        # The completion's tokens by re-tokenising its text: near-exact.
        completion_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if completion_tokens >= request.max_tokens else "stop",
            }],
            "usage": {
                "prompt_tokens": request.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": request.prompt_tokens + completion_tokens,
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


class Batcher:
    """A bounded queue of requests and the one worker that generates them, batched by sampling settings."""

    def __init__(self, chat_model: ChatModel, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE):
        self.chat_model, self.max_batch = chat_model, max_batch
        self.queue: asyncio.Queue = asyncio.Queue(max_queue)

    async def complete(self, request: ChatRequest) -> str:
        """The request's completion; asyncio.QueueFull when max_queue requests are already waiting."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((request, future))
        return await future

    async def work(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            while len(waiting) < self.max_batch and not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            groups: dict[tuple, list] = {}
            for request, future in waiting:
                groups.setdefault(request.batch_key, []).append((request, future))
            for group in groups.values():
                texts, failure = [None] * len(group), None
                try:  # in a thread: the event loop keeps accepting and queueing requests meanwhile
                    texts = await asyncio.to_thread(self.chat_model.generate, [request for request, _ in group])
                except Exception as exc:  # a generation failure is the server's fault: each request in it gets 500
                    failure = exc
                for (_, future), text in zip(group, texts):
                    if future.done():  # the client went away
                        continue
                    if failure is not None:
                        future.set_exception(failure)
                    else:
                        future.set_result(text)


async def read_body(request, limit: int) -> bytes:
    """The request's body, or TooLarge as soon as it is known to pass `limit` bytes: from Content-Length before a byte
    is read, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {int(declared)} bytes, more than the server's cap of {limit} "
                       "(fastslow serve --max-body-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body passed the server's cap of {limit} bytes (fastslow serve --max-body-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(chat_model: ChatModel, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE,
             max_body_mb: int = MAX_BODY_MB):
    """The FastAPI app serving `chat_model`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)

    @asynccontextmanager
    async def lifespan(app):
        app.state.batcher = Batcher(chat_model, max_batch, max_queue)
        worker = asyncio.create_task(app.state.batcher.work())
        yield
        worker.cancel()

    app = FastAPI(title="fastslow serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error(exc.status_code, message)

    @app.get("/v1/models")
    async def models():
        return chat_model.models()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await read_body(request, max_body_mb << 20)
            parsed = await asyncio.to_thread(chat_model.parse_body, body)  # JSON and tokens off the event loop
        except TooLarge as exc:  # the client may still be sending: answer, then close the connection
            return error(413, str(exc), {"Connection": "close"})
        except BadRequest as exc:
            return error(400, str(exc))
        try:
            text = await request.app.state.batcher.complete(parsed)
        except asyncio.QueueFull:
            return error(503, f"busy: {max_queue} requests are waiting; retry shortly", {"Retry-After": "1"})
        except Exception as exc:
            return error(500, f"{type(exc).__name__}: {exc}")
        return chat_model.response(parsed, text)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (bound before any model is loaded, so a busy port fails fast)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise FastSlowError(f"--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def uvicorn_server(chat_model: ChatModel, max_batch: int, max_queue: int, log_level: str,
                   max_body_mb: int = MAX_BODY_MB):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(make_app(chat_model, max_batch, max_queue, max_body_mb), log_level=log_level,
                                         lifespan="on", backlog=2048))


class BackgroundServer:
    """The server in a daemon thread (tests, notebooks): `with BackgroundServer(dir) as s: s.base_url`."""

    def __init__(self, model_dir: str, host: str = "127.0.0.1", port: int = 0, max_batch: int = MAX_BATCH,
                 max_queue: int = MAX_QUEUE, max_body_mb: int = MAX_BODY_MB):
        self.socket = listen(host, port)  # port 0: a free port
        self.host, self.port = host, self.socket.getsockname()[1]
        self.server = uvicorn_server(ChatModel(model_dir), max_batch, max_queue, log_level="warning",
                                     max_body_mb=max_body_mb)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            self.stop()
            raise FastSlowError(f"serve: the server on {host}:{self.port} did not start")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.socket.close()

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = MAX_BATCH,
          max_queue: int = MAX_QUEUE, max_body_mb: int = MAX_BODY_MB) -> None:
    """Serve `model_dir` until interrupted (Ctrl-C)."""
    sock = listen(host, port)
    chat_model = ChatModel(model_dir)
    print(f"serving {chat_model.name} at http://{host}:{sock.getsockname()[1]}/v1 (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    uvicorn_server(chat_model, max_batch, max_queue, log_level="info", max_body_mb=max_body_mb).run(sockets=[sock])
