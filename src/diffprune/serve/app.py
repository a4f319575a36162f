"""The HTTP API: predict with any loaded task, list, add and remove tasks, health.

One process holds the base model once (a ``TaskBank``); each task costs its sparse diff and head.
Requests for different tasks that arrive together share forward passes (``MicroBatcher``). Bad
requests get a 4xx with a message saying what is wrong; a bad task file is refused and the tasks
already loaded keep serving.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from diffprune._version import __version__
from diffprune.bank import TaskBank
from diffprune.data.task import TaskSpec
from diffprune.data.tokenize import encode, sequence_limit
from diffprune.inference import describe_outputs
from diffprune.serve.batcher import MicroBatcher
from diffprune.serve.limits import ServeLimits
from diffprune.task_file import (
    TaskDiff,
    TaskFileError,
    TaskFileMismatch,
    TaskFileMissing,
    from_bytes,
)

TASK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    text_pair: str | None = None


class PredictRequest(BaseModel):
    """One input (``text``, optional ``text_pair``) or a batch (``inputs``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "A man is sleeping.", "text_pair": "A person rests."},
        {"inputs": ["a fine film", ["premise", "hypothesis"], {"text": "a", "text_pair": "b"}]},
    ]})
    text: str | None = None
    text_pair: str | None = None
    inputs: list[str | list[str] | Pair] | None = Field(
        None, description="texts, [text, text_pair] lists, or {text, text_pair} objects")


class AddTaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="name to serve the task under")
    path: str = Field(description="task file or run folder on the server's disk")


def _examples(body: PredictRequest, limits: ServeLimits) -> list[tuple[str, ...]]:
    if (body.text is None) == (body.inputs is None):
        raise HTTPException(422, "give either 'text' (and optionally 'text_pair') or 'inputs'")
    if body.inputs is None:
        examples = [(body.text,) if body.text_pair is None else (body.text, body.text_pair)]
    else:
        if body.text_pair is not None:
            raise HTTPException(422, "'text_pair' goes inside each input of 'inputs'")
        examples = []
        for i, item in enumerate(body.inputs):
            if isinstance(item, str):
                examples.append((item,))
            elif isinstance(item, Pair):
                examples.append((item.text,) if item.text_pair is None else
                                (item.text, item.text_pair))
            elif len(item) in (1, 2):
                examples.append(tuple(item))
            else:
                raise HTTPException(422, f"input {i} has {len(item)} texts; give one or two")
    if not examples:
        raise HTTPException(422, "'inputs' is empty")
    if len(examples) > limits.max_batch:
        raise HTTPException(413, f"{len(examples)} inputs; at most {limits.max_batch} a request")
    for i, example in enumerate(examples):
        for text in example:
            if len(text) > limits.max_text_chars:
                raise HTTPException(413, f"input {i} has a text of {len(text):,} characters; "
                                         f"at most {limits.max_text_chars:,}")
    return examples


def _path_problem(err: Exception) -> str:
    """What went wrong loading a server-side file, in words that quote none of its bytes."""
    if isinstance(err, FileNotFoundError | TaskFileMissing):
        return "no such file"
    if isinstance(err, IsADirectoryError | PermissionError):
        return "not a readable task file"
    if isinstance(err, TaskFileMismatch):  # a valid file checked against this base
        return err.problem
    return "not a valid diffprune task file"


class BodyLimit:
    """ASGI middleware: every request body is limited while it streams, chunked or not, so a
    large body is refused before it is held in memory (a Content-Length over the limit is
    refused before anything is read)."""

    def __init__(self, app, limits: ServeLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"] == "/v1/tasks" and scope["method"] == "POST"
        limit = self.limits.max_upload_bytes if upload else self.limits.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _too_large(limit)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body over {limit:,} bytes")
            return message

        return await self.app(scope, limited, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit:,} bytes"}, status_code=413)


def _inside_root(path: str, root: str) -> Path:
    """``path`` resolved (links followed) if it stays inside ``root``; 403 otherwise."""
    base = Path(root).resolve()
    target = (base / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
    if target != base and base not in target.parents:
        raise HTTPException(403, "path loading is limited to the server's task root; this path "
                                 "is outside it")
    return target


def create_app(bank: TaskBank, tokenizer, limits: ServeLimits | None = None) -> FastAPI:
    """The API over ``bank``; tasks already in the bank are served."""
    limits = limits or ServeLimits()
    batcher = MicroBatcher(bank, tokenizer, limits.batch_rows, limits.batch_wait_ms / 1000,
                           limits.batch_window_ms / 1000,
                           await_returns=limits.batch_await_returns)
    length = sequence_limit(bank.model, tokenizer, limits.max_seq_length)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()  # the worker thread ends with the server

    app = FastAPI(title="diffprune", version=__version__, lifespan=lifespan,
                  description="Many diff-pruned tasks served from one base model.")
    app.state.bank, app.state.batcher, app.state.limits = bank, batcher, limits

    def spec_of(name: str) -> TaskSpec:
        # Lock-free: predict runs on the event loop, which must not wait for a batch to finish
        # (it would stop taking requests and sending answers meanwhile).
        try:
            record = bank.task_spec(name)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        return TaskSpec.from_dict({"name": name, "labels": record.get("labels"),
                                   "problem_type": record.get("problem_type")})

    app.add_middleware(BodyLimit, limits=limits)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "tasks": len(bank.tasks)}

    @app.get("/v1/tasks")
    def list_tasks() -> dict:
        return {"base": bank.base_info, "tasks": bank.describe()}

    @app.post("/v1/tasks/{task}/predict")
    async def predict(task: str, body: PredictRequest) -> dict:
        spec = spec_of(task)
        examples = _examples(body, limits)
        rows = [row for example in examples for row in encode(tokenizer, [example], length)]
        try:
            outputs = await asyncio.wrap_future(batcher.submit(task, rows))
        except KeyError as err:  # removed while the request waited
            raise HTTPException(404, str(err.args[0])) from None
        values = torch.stack([o.float() for o in outputs])  # (inputs, num_labels)
        answers = describe_outputs(values.squeeze(-1) if spec.labels is None else values, spec)
        return {"task": task, "outputs": answers}

    def _add(name: str, source: TaskDiff | Path) -> dict:
        if not TASK_NAME.match(name):
            raise HTTPException(422, f"task name {name!r}: use 1-64 letters, digits, _ . -")
        if name in bank.tasks:
            raise HTTPException(409, f"a task named {name!r} is already loaded; delete it first")
        try:
            bank.add(name, source)
        except (TaskFileError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
            if isinstance(source, TaskDiff):  # the client's own bytes: the whole reason
                raise HTTPException(422, f"task {name!r} refused: {err}") from None
            # A file on the server: say what failed, never what the file holds (a message
            # about a header could quote its bytes).
            raise HTTPException(422, f"task {name!r} refused: {_path_problem(err)}") from None
        except ValueError as err:  # added by another request meanwhile
            raise HTTPException(409, str(err)) from None
        return next(row for row in bank.describe() if row["name"] == name)

    @app.post("/v1/tasks", status_code=201, openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": AddTaskRequest.model_json_schema()},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def add_task(request: Request, name: str | None = Query(
            None, description="task name, for an uploaded file")) -> dict:
        """Add a task from a file on the server (JSON) or an uploaded task file (bytes)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        data = await request.body()
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"request body over {limits.max_upload_bytes:,} bytes")
        if kind == "application/octet-stream":
            if name is None:
                raise HTTPException(422, "an uploaded task file needs ?name=")
            try:
                task = await run_in_threadpool(from_bytes, data, f"upload {name!r}")
            except TaskFileError as err:
                raise HTTPException(422, f"task {name!r} refused: {err}") from None
            return await run_in_threadpool(_add, name, task)
        if kind != "application/json":
            raise HTTPException(415, "send JSON {name, path} or the file as "
                                     "application/octet-stream with ?name=")
        try:
            body = AddTaskRequest.model_validate_json(data)
        except ValueError as err:
            raise HTTPException(422, f"expected JSON {{name, path}}: {err}") from None
        if limits.task_root is None:
            raise HTTPException(403, "this server takes uploaded task files only (start it "
                                     "with --allow-path-loading --task-root DIR for paths)")
        return await run_in_threadpool(_add, body.name, _inside_root(body.path,
                                                                       limits.task_root))

    @app.delete("/v1/tasks/{task}")
    def delete_task(task: str) -> dict:
        try:
            bank.remove(task)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        return {"deleted": task, "tasks": bank.tasks}

    return app
