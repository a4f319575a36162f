"""Tiny models built from configs (unit tests) and paths to the real data (integration tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_bert(num_labels: int = 2):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=num_labels)
    return BertForSequenceClassification(config).eval()


def tiny_roberta(num_labels: int = 2):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(vocab_size=99, hidden_size=16, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=32,
                           max_position_embeddings=40, num_labels=num_labels)
    return RobertaForSequenceClassification(config).eval()


def tiny_gpt2_lm():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=99, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    return GPT2LMHeadModel(config).eval()


def tiny_mlp():
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.LayerNorm(8),
                               torch.nn.Linear(8, 3)).eval()


def token_batch(batch: int = 3, length: int = 7) -> torch.Tensor:
    return torch.randint(3, 99, (batch, length))


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A saved tiny BertModel (no head: the classifier is new, as for a real base) with the
    bundled model's tokenizer, for end-to-end runs of the command line in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from diffprune.loading import default_model_path

    folder = tmp_path_factory.mktemp("tiny_base")
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
