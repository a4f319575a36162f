"""``diffprune inspect`` and ``diffprune merge`` on task files."""

from __future__ import annotations

import copy
import json

import torch
from conftest import token_batch
from taskfiles import make_task

from diffprune.cli.main import main
from diffprune.task_file import save_task


def _saved_task(tmp_path, seed=0):
    pristine, wrapped, task = make_task(seed=seed)
    base_dir = tmp_path / "base"
    if not base_dir.exists():
        copy.deepcopy(pristine).save_pretrained(base_dir)
    task.base["name_or_path"] = str(base_dir)
    task.task["name"] = f"toy{seed}"
    return save_task(task, tmp_path / f"t{seed}" / "diff.safetensors"), wrapped, task


def test_inspect_table_and_json(tmp_path, capsys):
    path, _, task = _saved_task(tmp_path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{task.nonzeros:,}" in out and "layer 1" in out and "toy0" in out
    assert main(["inspect", str(path.parent), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nonzeros"] == task.nonzeros
    assert sum(r["nonzeros"] for r in report["layers"]) == task.nonzeros
    assert sum(r["nonzeros"] for r in report["tensors"]) == task.nonzeros
    assert report["base"]["fingerprint"] == task.base["fingerprint"]
    assert report["bytes_per_nonzero"] == path.stat().st_size / task.nonzeros


def test_inspect_plot_has_one_panel_per_file(tmp_path, capsys):
    first, _, _ = _saved_task(tmp_path, 0)
    second, _, _ = _saved_task(tmp_path, 1)
    png = tmp_path / "where.png"
    assert main(["inspect", str(first), str(second), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > height  # two panels side by side


def test_merge_command(tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    path, wrapped, _ = _saved_task(tmp_path)
    assert main(["merge", str(path), "--output", str(tmp_path / "merged")]) == 0
    assert "merged model:" in capsys.readouterr().out
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    x = token_batch(3)
    # The file stores float16 values (compact), so agreement is to float16 rounding of the diff.
    torch.testing.assert_close(merged(input_ids=x).logits, wrapped(input_ids=x).logits,
                               rtol=1e-3, atol=1e-3)


def test_inspect_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none.safetensors")]) != 0
    assert "no such file" in capsys.readouterr().err
