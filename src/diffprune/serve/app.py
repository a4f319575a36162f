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

from diffprune import __version__
from diffprune.bank import TaskBank
from diffprune.data.task import TaskSpec
from diffprune.inference import describe_outputs
from diffprune.serve.batcher import MicroBatcher
from diffprune.serve.limits import ServeLimits
from diffprune.task_file import TaskDiff, TaskFileError, from_bytes

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


def create_app(bank: TaskBank, tokenizer, limits: ServeLimits | None = None) -> FastAPI:
    """The API over ``bank``; tasks already in the bank are served."""
    limits = limits or ServeLimits()
    batcher = MicroBatcher(bank, tokenizer, limits.batch_rows, limits.batch_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()  # the worker thread ends with the server

    app = FastAPI(title="diffprune", version=__version__, lifespan=lifespan,
                  description="Many diff-pruned tasks served from one base model.")
    app.state.bank, app.state.batcher, app.state.limits = bank, batcher, limits

    def spec_of(name: str) -> TaskSpec:
        for row in bank.describe():
            if row["name"] == name:
                return TaskSpec.from_dict({"name": name, "labels": row["labels"],
                                           "problem_type": row["problem_type"]})
        raise HTTPException(404, f"no task named {name!r} is loaded "
                                 f"(loaded: {', '.join(bank.tasks) or 'none'})")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        upload = request.url.path == "/v1/tasks" and request.method == "POST"
        limit = limits.max_upload_bytes if upload else limits.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse({"detail": f"request body over {limit:,} bytes"}, status_code=413)
        return await call_next(request)

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
        rows = [dict(tokenizer(*example, truncation=True, max_length=limits.max_seq_length))
                for example in examples]
        try:
            outputs = await asyncio.wrap_future(batcher.submit(task, rows))
        except KeyError as err:  # removed while the request waited
            raise HTTPException(404, str(err.args[0])) from None
        values = torch.stack([o.float() for o in outputs])  # (inputs, num_labels)
        answers = describe_outputs(values.squeeze(-1) if spec.labels is None else values, spec)
        return {"task": task, "outputs": answers}

    def _add(name: str, source: TaskDiff | str) -> dict:
        if not TASK_NAME.match(name):
            raise HTTPException(422, f"task name {name!r}: use 1-64 letters, digits, _ . -")
        if name in bank.tasks:
            raise HTTPException(409, f"a task named {name!r} is already loaded; delete it first")
        try:
            bank.add(name, source)
        except (TaskFileError, FileNotFoundError, IsADirectoryError) as err:
            raise HTTPException(422, f"task {name!r} refused: {err}") from None
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
        if not limits.allow_paths:
            raise HTTPException(403, "this server takes uploaded task files only")
        return await run_in_threadpool(_add, body.name, str(Path(body.path)))

    @app.delete("/v1/tasks/{task}")
    def delete_task(task: str) -> dict:
        try:
            bank.remove(task)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        return {"deleted": task, "tasks": bank.tasks}

    return app
