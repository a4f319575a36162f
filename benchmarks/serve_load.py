"""Load on the HTTP server over loopback: many tasks beside one, tasks added and removed live.

Phase 1 (three tasks, live changes): a `diffprune serve` process with tasks t0, t1, t2 gets
``--requests`` predict requests from ``--clients`` concurrent clients, spread over the loaded
tasks. Halfway a fourth task is added (POST /v1/tasks), at three quarters t1 is removed (DELETE);
requests for t1 sent after that must get 404, every other answer must equal the single-task
answer (the same input through a bank holding that task alone, one input per forward pass). No
5xx is allowed.

Phase 2 (throughput, mixed beside one task): a fresh server holding t0, t1, t2 gets
``--rounds`` pairs of load segments of ``--segment`` requests each: one segment spread over the
three tasks, one for t0 alone, in alternating order (ABBA...), so that a drift of the shared
machine's speed falls on both alike. The ratio is total mixed requests/s over total one-task
requests/s; each round's ratio is kept too. The same exactness check applies.

Phase 3 (memory): a fresh server with t0 alone, after a short load; then nine more tasks are
added and its RSS is compared with the one-task RSS (goal: at most 1.1x).

Tasks are synthetic 0.5% diffs at random positions on the bundled MiniLM (as in bank.py); the
inputs are SST-2 dev sentences. Bounded in count and time; loopback only.

    python benchmarks/serve_load.py --quick       # ~1 minute, prints only
    python benchmarks/serve_load.py               # writes results/serve_load.*
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch
from _report import finish, run_info
from bank import synthetic_task

from diffprune.bank import TaskBank
from diffprune.task_file import save_task

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def sentences(n: int) -> list[str]:
    path = GLUE / "SST-2" / "dev.tsv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        return [r[0] for r in rows[:n]]
    rng = random.Random(0)
    words = "the a film plot good bad slow bright actor scene story ends".split()
    return [" ".join(rng.choices(words, k=rng.randint(4, 20))) for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Server:
    """A `diffprune serve` subprocess on a free loopback port."""

    flags: list[str] = []  # --server-flag: extra flags for every server of the run

    def __init__(self, tasks: dict[str, Path]):
        self.port = free_port()
        args = [sys.executable, "-m", "diffprune.cli.main", "serve", "--port", str(self.port),
                *self.flags]
        for name, path in tasks.items():
            args += ["--task", f"{name}={path}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode()[-2000:])
        raise RuntimeError("server did not start in 120 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def upload(client: httpx.Client, name: str, path: Path) -> None:
    """Add a task by uploading its file (the server's default: no path loading)."""
    r = client.post("/v1/tasks", params={"name": name}, content=path.read_bytes(),
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def expected_answers(tasks: dict[str, Path], texts: list[str]) -> dict:
    """(task, text) -> class probabilities, one input per forward pass, one task at a time."""
    bank = TaskBank.from_pretrained()
    out = {}
    for name, path in tasks.items():
        bank.add(name, path)
        for text in texts:
            batch = bank.tokenizer(text, return_tensors="pt", truncation=True, max_length=128)
            with torch.no_grad():
                out[name, text] = bank.forward(name, **batch).logits[0].softmax(-1).tolist()
        bank.remove(name)
    return out


def load(url: str, plan: list[tuple[str, str]], clients: int, events: dict, deadline: float,
         arriving: dict[str, threading.Event] | None = None):
    """Send ``plan`` (task, text) from ``clients`` threads; ``events`` maps a request index to
    an action the client that draws it runs before its request (add/remove a task), while the
    other clients keep sending; a request for a task in ``arriving`` waits until its event is
    set (the task has been added). Returns per-request records."""
    arriving = arriving or {}
    records: list[dict | None] = [None] * len(plan)
    cursor = {"next": 0}
    lock = threading.Lock()
    removed: dict[str, float] = {}  # task -> when it was removed

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                with lock:
                    i = cursor["next"]
                    if i >= len(plan) or time.time() > deadline:
                        return
                    cursor["next"] += 1
                if i in events:  # live: the other clients keep sending meanwhile
                    events[i](client, removed)
                task, text = plan[i]
                if task in arriving:
                    arriving[task].wait()
                start = time.perf_counter()
                response = client.post(f"/v1/tasks/{task}/predict", json={"text": text})
                end = time.perf_counter()
                # A request for a removed task may be refused if it was answered after removal.
                records[i] = {"task": task, "text": text, "status": response.status_code,
                              "seconds": end - start, "removed": removed.get(task, end) < end,
                              "body": response.json()}

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return [r for r in records if r is not None], elapsed


def summarise(records: list[dict], elapsed: float, expected: dict) -> dict:
    ok = [r for r in records if r["status"] == 200]
    mismatches = 0
    for r in ok:
        probs = list(r["body"]["outputs"][0]["scores"].values())
        want = expected[r["task"], r["text"]]
        mismatches += any(abs(a - b) > 1e-4 for a, b in zip(probs, want))
    latencies = sorted(r["seconds"] for r in ok)
    return {
        "requests": len(records), "ok": len(ok),
        "status_5xx": sum(r["status"] >= 500 for r in records),
        "unexpected_4xx": sum(400 <= r["status"] < 500 and not r["removed"] for r in records),
        "404_after_removal": sum(r["status"] == 404 and r["removed"] for r in records),
        "answers_differing_from_single_task": mismatches,
        "seconds": round(elapsed, 2), "requests_per_s": round(len(records) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
    }


def _joined(segments: list[tuple[list[dict], float]]) -> tuple[list[dict], float]:
    """Several load segments as one: all their records, their summed time."""
    return [r for records, _ in segments for r in records], sum(t for _, t in segments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=None,
                        help="pairs of throughput segments (default 4; 2 with --quick)")
    parser.add_argument("--segment", type=int, default=None,
                        help="requests per throughput segment (default 600; 150 with --quick)")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--server-flag", action="append", default=[],
                        help="a flag for diffprune serve, e.g. --server-flag=--no-batch-await-"
                             "returns (repeat for more)")
    args = parser.parse_args()
    Server.flags = args.server_flag
    n = args.requests or (400 if args.quick else 5000)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.segment = args.segment or (150 if args.quick else 600)
    texts = sentences(64)
    rng = random.Random(0)

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    maker = TaskBank.from_pretrained()
    files = {f"t{i}": save_task(synthetic_task(maker, None, i, 0.005), tmp / f"t{i}.safetensors")
             for i in range(10)}
    del maker
    expected = expected_answers({k: files[k] for k in ("t0", "t1", "t2", "t3")}, texts)

    # Phase 1: three tasks, a fourth added halfway, t1 removed at three quarters.
    server = Server({k: files[k] for k in ("t0", "t1", "t2")})
    live = {"tasks": ["t0", "t1", "t2"]}
    plan = []
    for i in range(n):
        if i == n // 2:
            live["tasks"] = ["t0", "t1", "t2", "t3"]
        plan.append((rng.choice(live["tasks"]), rng.choice(texts)))

    t3_added = threading.Event()

    def add_t3(client, removed):
        upload(client, "t3", files["t3"])
        t3_added.set()

    def remove_t1(client, removed):
        removed["t1"] = time.perf_counter()
        assert client.delete("/v1/tasks/t1").status_code == 200

    deadline = time.time() + args.max_seconds
    try:
        records, elapsed = load(server.url, plan, args.clients,
                                {n // 2: add_t3, 3 * n // 4: remove_t1}, deadline,
                                arriving={"t3": t3_added})
    finally:
        server.stop()
    many = summarise(records, elapsed, expected)

    # Phase 2: throughput, mixed and one task on one server, in alternating segments.
    server = Server({k: files[k] for k in ("t0", "t1", "t2")})
    segments: dict[str, list[tuple[list[dict], float]]] = {"mixed": [], "one": []}
    try:
        for round_ in range(args.rounds):
            if round_ and time.time() > deadline:  # --max-seconds: keep the pairs that ran
                break
            order = ("mixed", "one") if round_ % 2 == 0 else ("one", "mixed")
            for kind in order:
                names = ["t0", "t1", "t2"] if kind == "mixed" else ["t0"]
                seg_plan = [(rng.choice(names), rng.choice(texts)) for _ in range(args.segment)]
                segments[kind].append(load(server.url, seg_plan, args.clients, {}, deadline))
    finally:
        server.stop()
    mixed = summarise(*_joined(segments["mixed"]), expected)
    one = summarise(*_joined(segments["one"]), expected)
    round_ratios = [round((len(m) / tm) / (len(o) / to), 3)
                    for (m, tm), (o, to) in zip(segments["mixed"], segments["one"])]

    # Phase 3: memory, ten tasks beside one.
    server = Server({"t0": files["t0"]})
    try:
        warm = [("t0", rng.choice(texts)) for _ in range(min(n, 300))]
        load(server.url, warm, args.clients, {}, deadline)
        rss_one = rss_mb(server.proc.pid)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i in range(1, 10):
                upload(client, f"t{i}", files[f"t{i}"])
            client.post("/v1/tasks/t9/predict", json={"text": texts[0]})
        rss_ten = rss_mb(server.proc.pid)
    finally:
        server.stop()

    report = {**run_info(), "settings": {"requests": n, "clients": args.clients,
                                         "rounds": args.rounds, "segment": args.segment,
                                         "tasks_density": 0.005, "base": "bundled MiniLM",
                                         "server_flags": args.server_flag},
              "live_changes": many, "mixed_tasks": mixed, "one_task": one,
              "round_ratios": round_ratios,
              "rss_mb": {"one_task": round(rss_one, 1), "ten_tasks": round(rss_ten, 1)},
              "memory_ratio_10_tasks": round(rss_ten / rss_one, 3),
              "throughput_ratio_vs_one_task": round(mixed["requests_per_s"]
                                                    / one["requests_per_s"], 3)}
    table = "\n".join([
        "| server | requests | 5xx | unexpected 4xx | 404 after removal | wrong answers "
        "| req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
        *(f"| {name} | {r['requests']} | {r['status_5xx']} | {r['unexpected_4xx']} | "
          f"{r['404_after_removal']} | {r['answers_differing_from_single_task']} | "
          f"{r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
          for name, r in (("3 tasks, +1 added, 1 removed (phase 1)", many),
                          ("3 tasks mixed (phase 2)", mixed), ("t0 alone (phase 2)", one))),
        "",
        f"Mixed over one-task requests/s: {report['throughput_ratio_vs_one_task']:.3f}x in "
        f"all of phase 2; by round: {', '.join(f'{r:.3f}' for r in round_ratios)}.",
        "",
        f"Server RSS: {rss_one:.0f} MB with one task, {rss_ten:.0f} MB with ten "
        f"({report['memory_ratio_10_tasks']:.3f}x).",
    ])
    finish("serve_load", "HTTP server under load", report, table,
           {"status_5xx": many["status_5xx"] + mixed["status_5xx"] + one["status_5xx"],
            "wrong_answers": many["answers_differing_from_single_task"]
            + mixed["answers_differing_from_single_task"]
            + one["answers_differing_from_single_task"],
            "memory_ratio_10_tasks": report["memory_ratio_10_tasks"],
            "throughput_ratio_vs_one_task": report["throughput_ratio_vs_one_task"]}, args.quick)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
