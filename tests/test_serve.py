"""The HTTP server, in-process: every endpoint, shared batches, and the bad requests."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from fastapi.testclient import TestClient
from taskfiles import make_task
from transformers import AutoModelForSequenceClassification

from diffprune.bank import TaskBank
from diffprune.serve.app import ServeLimits, create_app
from diffprune.task_file import save_task

TEXTS = ["a fine film", "the plot was thin", "nothing happens for an hour", "bright and brisk"]
PAIRS = [("A man sleeps.", "A person rests."), ("It rains.", "The street is dry.")]


@pytest.fixture(scope="module")
def setup(tiny_base_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_base_dir)
    files = {}
    for seed in range(4):
        _, _, task = make_task(copy.deepcopy(base), seed=seed)
        files[f"t{seed}"] = save_task(task, folder / f"t{seed}.safetensors")
    regression = AutoModelForSequenceClassification.from_pretrained(tiny_base_dir, num_labels=1)
    _, _, task = make_task(regression, seed=9)
    task.task = {"name": "sim", "labels": [], "num_labels": 1, "problem_type": "regression"}
    files["sim"] = save_task(task, folder / "sim.safetensors")
    other = copy.deepcopy(base)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)  # another base: its fingerprint differs
    _, _, task = make_task(other, seed=5)
    files["other"] = save_task(task, folder / "other.safetensors")
    return tiny_base_dir, files


@pytest.fixture()
def server(setup):
    base_dir, files = setup
    bank = TaskBank.from_pretrained(base_dir)
    for name in ("t0", "t1", "sim"):
        bank.add(name, files[name])
    reference = TaskBank.from_pretrained(base_dir)  # answers one task at a time, no server
    for name in files:
        if name != "other":
            reference.add(name, files[name])
    limits = ServeLimits(max_batch=8, max_text_chars=200, max_body_bytes=4096,
                         batch_wait_ms=20, task_root=str(files["t0"].parent))
    app = create_app(bank, bank.tokenizer, limits)
    with TestClient(app) as client:
        yield client, reference, files
    assert not app.state.batcher._thread.is_alive()  # shutdown stops the batching thread


def _single(reference, task, texts):
    """The answer of a lone forward pass of one task on one input."""
    batch = reference.tokenizer(*texts, return_tensors="pt", truncation=True, max_length=128)
    return reference.forward(task, **batch).logits[0].float()


def _check(reference, task, texts, answer):
    logits = _single(reference, task, texts)
    if "value" in answer:
        assert answer["value"] == pytest.approx(float(logits[0]), abs=1e-4)
    else:
        probs = logits.softmax(-1)
        assert list(answer["scores"].values()) == pytest.approx(probs.tolist(), abs=1e-4)


def test_health_and_task_list(server):
    client, _, _ = server
    assert client.get("/healthz").json() == {"status": "ok", "tasks": 3}
    rows = {r["name"]: r for r in client.get("/v1/tasks").json()["tasks"]}
    assert set(rows) == {"t0", "t1", "sim"}
    assert rows["t0"]["labels"] == ["no", "yes"] and rows["sim"]["problem_type"] == "regression"
    assert rows["t0"]["density"] == pytest.approx(0.05, rel=1e-3)
    assert rows["t0"]["file_bytes"] > 0 and rows["t0"]["base_fingerprint"]
    assert "/v1/tasks/{task}/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_single_pair_batch_and_regression(server):
    client, reference, _ = server
    answer = client.post("/v1/tasks/t0/predict", json={"text": TEXTS[0]}).json()
    assert answer["task"] == "t0" and answer["outputs"][0]["label"] in ("no", "yes")
    _check(reference, "t0", (TEXTS[0],), answer["outputs"][0])
    pair = client.post("/v1/tasks/t1/predict", json={"text": PAIRS[0][0],
                                                     "text_pair": PAIRS[0][1]}).json()
    _check(reference, "t1", PAIRS[0], pair["outputs"][0])
    inputs = [TEXTS[1], list(PAIRS[1]), {"text": TEXTS[2]}, {"text": PAIRS[0][0],
                                                             "text_pair": PAIRS[0][1]}]
    batch = client.post("/v1/tasks/t0/predict", json={"inputs": inputs}).json()["outputs"]
    expected = [(TEXTS[1],), PAIRS[1], (TEXTS[2],), PAIRS[0]]
    assert len(batch) == 4
    for texts, out in zip(expected, batch):
        _check(reference, "t0", texts, out)
    value = client.post("/v1/tasks/sim/predict", json={"text": TEXTS[3]}).json()["outputs"][0]
    assert set(value) == {"value"}
    _check(reference, "sim", (TEXTS[3],), value)


def test_requests_for_different_tasks_share_forward_passes(server):
    client, reference, _ = server
    jobs = [(task, text) for text in TEXTS for task in ("t0", "t1", "sim")] * 4
    batcher = client.app.state.batcher
    before = batcher.batches
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: client.post(
            f"/v1/tasks/{job[0]}/predict", json={"text": job[1]}), jobs))
    assert all(a.status_code == 200 for a in answers)
    for (task, text), answer in zip(jobs, answers):
        _check(reference, task, (text,), answer.json()["outputs"][0])
    assert batcher.batches - before < len(jobs)  # some requests were answered together


def test_add_by_path_and_upload_then_delete(server):
    client, reference, files = server
    added = client.post("/v1/tasks", json={"name": "t2", "path": str(files["t2"])})
    assert added.status_code == 201 and added.json()["name"] == "t2"
    upload = client.post("/v1/tasks?name=t3", content=files["t3"].read_bytes(),
                         headers={"content-type": "application/octet-stream"})
    assert upload.status_code == 201
    for task in ("t2", "t3"):
        out = client.post(f"/v1/tasks/{task}/predict", json={"text": TEXTS[0]}).json()
        _check(reference, task, (TEXTS[0],), out["outputs"][0])
    assert client.post("/v1/tasks", json={"name": "t2", "path": str(files["t2"])}
                       ).status_code == 409
    assert client.delete("/v1/tasks/t2").json()["tasks"] == ["t0", "t1", "sim", "t3"]
    gone = client.post("/v1/tasks/t2/predict", json={"text": "x"})
    assert gone.status_code == 404 and "no task named 't2'" in gone.json()["detail"]
    assert client.delete("/v1/tasks/t2").status_code == 404


def test_bad_task_files_are_refused_and_serving_goes_on(server, tmp_path):
    client, reference, files = server
    before = client.post("/v1/tasks/t0/predict", json={"text": TEXTS[0]}).json()
    damaged = bytearray(files["t2"].read_bytes())
    damaged[-5] ^= 0xFF
    cases = [
        (dict(json={"name": "x", "path": str(files["other"])}), "trained against base"),
        (dict(json={"name": "x", "path": "none.safetensors"}), "no such file"),
        (dict(content=bytes(damaged), headers={"content-type": "application/octet-stream"}),
         "checksum"),
        (dict(content=b"\x80\x04pickle", headers={"content-type": "application/octet-stream"}),
         "pickle"),
        (dict(json={"name": "bad name!", "path": str(files["t2"])}), "task name"),
        (dict(json={"name": "x"}), "expected JSON"),
        (dict(content=b"name=x", headers={"content-type": "text/plain"}), "octet-stream"),
    ]
    for kwargs, pattern in cases:
        url = "/v1/tasks?name=x" if "content" in kwargs else "/v1/tasks"
        response = client.post(url, **kwargs)
        assert 400 <= response.status_code < 500, (pattern, response.text)
        assert any(p in response.json()["detail"] for p in pattern.split("|")), response.text
    assert [r["name"] for r in client.get("/v1/tasks").json()["tasks"]] == ["t0", "t1", "sim"]
    assert client.post("/v1/tasks/t0/predict", json={"text": TEXTS[0]}).json() == before


@pytest.mark.parametrize("request_kwargs,status,pattern", [
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 422, "JSON"),
    (dict(json={"text": "a", "inputs": ["b"]}), 422, "either"),
    (dict(json={}), 422, "either"),
    (dict(json={"inputs": []}), 422, "empty"),
    (dict(json={"inputs": [["a", "b", "c"]]}), 422, "3 texts"),
    (dict(json={"inputs": ["a"], "text_pair": "b"}), 422, "inside each input"),
    (dict(json={"inputs": ["a"] * 9}), 413, "at most 8"),
    (dict(json={"text": "a" * 201}), 413, "201 characters"),
    (dict(json={"inputs": ["a" * 150] * 30}), 413, "over 4,096 bytes"),
    (dict(json={"text": 5}), 422, "string"),
    (dict(json={"text": "a", "extra": 1}), 422, "xtra"),
])
def test_bad_requests_get_4xx_with_a_message(server, request_kwargs, status, pattern):
    client, _, _ = server
    response = client.post("/v1/tasks/t0/predict", **request_kwargs)
    assert response.status_code == status, response.text
    assert pattern in response.text


def test_unknown_task_is_404(server):
    client, _, _ = server
    response = client.post("/v1/tasks/nope/predict", json={"text": "a"})
    assert response.status_code == 404 and "loaded: t0, t1, sim" in response.json()["detail"]


def test_requests_are_taken_in_while_a_batch_holds_the_bank(server):
    """The handlers look tasks up without the bank's lock, so the event loop keeps taking
    requests (and sending answers) while a batch runs; before, each request waited for it."""
    client, _, _ = server
    bank = client.app.state.bank
    held, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold():  # stands in for a long forward pass
        with bank.lock:
            held.set()
            release.wait(timeout=10)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        response = client.post("/v1/tasks/nope/predict", json={"text": "a"})
        answered_while_held = not released.is_set()
        known = ThreadPoolExecutor(1).submit(
            client.post, "/v1/tasks/t0/predict", json={"text": TEXTS[0]})
        assert response.status_code == 404 and answered_while_held
        assert client.get("/healthz").status_code == 200 and not known.done()
    finally:
        release.set()
        holder.join()
    assert known.result(timeout=30).status_code == 200  # answered once the batch is over


def test_serve_command_refuses_a_bad_task_before_serving(tiny_base_dir, tmp_path, capsys):
    from diffprune.cli.main import main

    assert main(["serve", "--model", str(tiny_base_dir), "--task",
                 f"x={tmp_path / 'none.safetensors'}"]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--task", "no-equals-sign"])


def test_the_command_line_works_without_the_web_extra():
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('fastapi', 'uvicorn', 'starlette'):\n"
            "            raise ImportError('not installed')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from diffprune.cli.main import main\n"
            "sys.exit(main(['serve', '--task', 'x=y']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and 'pip install "diffprune[serve]"' in done.stderr


def test_path_loading_is_off_unless_a_task_root_is_given(setup):
    base_dir, files = setup
    bank = TaskBank.from_pretrained(base_dir)
    with TestClient(create_app(bank, bank.tokenizer, ServeLimits())) as client:
        refused = client.post("/v1/tasks", json={"name": "x", "path": str(files["t0"])})
        assert refused.status_code == 403 and "uploaded task files only" in refused.text
        upload = client.post("/v1/tasks?name=t0", content=files["t0"].read_bytes(),
                             headers={"content-type": "application/octet-stream"})
        assert upload.status_code == 201


def test_no_response_reveals_a_byte_of_a_file_that_is_not_a_task_file(server, tmp_path):
    client, _, files = server
    root = files["t0"].parent
    secret = b"root:x:0:0:SECRET-LINE-1234567890:/root:/bin/bash\n"
    (root / "passwd").write_bytes(secret)
    (root / "link").unlink(missing_ok=True)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(files["t2"].read_bytes())
    (root / "link").symlink_to(outside)
    cases = [("/etc/passwd", 403), ("../" * 12 + "etc/passwd", 403), (str(outside), 403),
             ("link", 403), ("passwd", 422), (".", 422)]
    for path, status in cases:
        response = client.post("/v1/tasks", json={"name": "x", "path": path})
        assert response.status_code == status, (path, response.text)
        body = response.content
        assert b"SECRET" not in body and b"root:x" not in body, path
        # not even the first 8 bytes as the header length the parser reads them as
        header_length = str(int.from_bytes(secret[:8], "little")).encode()
        assert header_length not in body, path
    assert "x" not in [r["name"] for r in client.get("/v1/tasks").json()["tasks"]]


def test_a_chunked_body_is_limited_while_it_streams(server):
    client, _, _ = server
    sent = []

    def chunks():
        for _ in range(1000):  # 1000 x 1 kB against a 4 kB limit
            sent.append(1)
            yield b"x" * 1024

    response = client.post("/v1/tasks/t0/predict", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over 4,096 bytes" in response.text


def test_a_head_that_does_not_fit_the_base_is_refused_when_added(server, setup):
    client, _, _ = server
    base_dir, files = setup
    from diffprune.task_file import load_task, to_bytes

    task = load_task(files["t2"])
    task.head["classifier.weight"] = torch.zeros(2, 7)  # the base's hidden size is 16
    response = client.post("/v1/tasks?name=bad", content=to_bytes(task),
                           headers={"content-type": "application/octet-stream"})
    assert response.status_code == 422, response.text
    assert "has shape (2, 7), which does not fit the model's (2, 16)" in response.text
    task = load_task(files["t2"])
    task.head["classifier.bias"] = torch.zeros(3)  # 2 output rows, 3 biases
    response = client.post("/v1/tasks?name=bad", content=to_bytes(task),
                           headers={"content-type": "application/octet-stream"})
    assert response.status_code == 422 and "disagree" in response.text
    assert client.post("/v1/tasks/t0/predict", json={"text": "a"}).status_code == 200
