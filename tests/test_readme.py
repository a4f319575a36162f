"""The README's library quick start runs as written (on a tiny model, in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import diffprune

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- the block below runs in tests/test_readme.py -->"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its tested quick start"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    return block.group(1)


def test_the_quick_start_is_about_thirty_lines_of_the_whole_flow():
    code = quick_start()
    assert len(code.splitlines()) <= 36
    for step in ("get_diffprune_model", "DiffPruneTrainer", "save_model", "from_pretrained",
                 "TaskBank", "bank.use", "task_names=", "merge_and_unload"):
        assert step in code, step


def test_the_quick_start_runs_as_written(tmp_path, tiny_base_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(diffprune, "default_model_path", lambda: tiny_base_dir)
    namespace: dict = {}
    exec(compile(quick_start(), str(README), "exec"), namespace)  # noqa: S102
    assert sorted(p.name for p in (tmp_path / "runs" / "quickstart").iterdir()) == \
        ["diff.safetensors"]
    out = capsys.readouterr().out
    assert "trainable params:" in out and "trainable%:" in out
    merged, reloaded = namespace["merged"], namespace["reloaded"]
    batch = namespace["batch"]
    with torch.no_grad():
        plain = merged.eval()(**batch).logits
        banked = namespace["bank"](task_names=["rte"], **batch).logits
    assert torch.allclose(plain, banked, atol=1e-5)
    assert reloaded.stage == "merged"
