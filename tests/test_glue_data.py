"""The nine GLUE tasks: TSV parsing (with the quirks of SOURCES.md), hub records, metrics."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from conftest import GLUE_DIR

from diffprune.data import glue
from diffprune.data.glue import TASKS, from_records, get_task, load_glue, read_split
from diffprune.data.metrics import glue_metrics

# One tiny file per task in the classic layout, written byte for byte as GLUE ships them.
FIXTURES = {
    "CoLA/dev.tsv": "gj04\t1\t\tOur friends won't buy this analysis.\n"
                    "gj04\t0\t*\tThey drank the pub.",  # no header, no final newline
    "SST-2/dev.tsv": "sentence\tlabel\nit 's a charming journey . \t1\nbad . \t0\n",
    "MRPC/dev.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                    "1\t1\t2\tHe said \"yes.\tHe agreed.\n0\t3\t4\tA b.\tC d.\n",
    "STS-B/dev.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                     "sentence2\tscore\n0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\t"
                     "A man.\tA person.\t5.000\n1\tmain-news\tx\ty\t1\tn\tn\tA.\tB.\t0.250\n",
    "QQP/dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                   "1\t1\t2\tHow?\tWhy?\t0\n2\t3\t4\tWhat is \"x\tWhat's x?\t1\n"
                   "3\t5\t6\tbroken row\n",  # a short row, which GLUE's reader skips
    "MNLI/dev_matched.tsv": "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\t"
                            "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                            "0\t1\t1e\tfiction\t.\t.\t.\t.\tP.\tH.\tneutral\tneutral\t"
                            "neutral\tneutral\tneutral\tneutral\n"
                            "1\t2\t2c\tfiction\t.\t.\t.\t.\tP2.\tH2.\tcontradiction\tx\tx\tx\tx\t"
                            "contradiction\n",
    "MNLI/dev_mismatched.tsv": "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\t"
                               "sentence1\tsentence2\tlabel1\tgold_label\n"
                               "0\t1\t1e\tletters\t.\t.\t.\t.\tQ.\tR.\tentailment\tentailment\n",
    "QNLI/dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tentailment\n"
                    "1\tWhen?\tNever.\tnot_entailment\n",
    "RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n"
                   "0\t\"Unmatched quote start.\tA claim.\tnot_entailment\n"
                   "1\tX.\tY.\tentailment\n",
    "WNLI/dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n",
}

EXPECTED = {  # task: (split, first example's texts, labels)
    "cola": ("dev", ("Our friends won't buy this analysis.",), [1, 0]),
    "sst2": ("dev", ("it 's a charming journey . ",), [1, 0]),
    "mrpc": ("dev", ('He said "yes.', "He agreed."), [1, 0]),
    "stsb": ("dev", ("A man.", "A person."), [5.0, 0.25]),
    "qqp": ("dev", ("How?", "Why?"), [0, 1]),
    "mnli": ("dev_matched", ("P.", "H."), [1, 2]),
    "qnli": ("dev", ("Who?", "Him."), [0, 1]),
    "rte": ("dev", ('"Unmatched quote start.', "A claim."), [1, 0]),
    "wnli": ("dev", ("A.", "B."), [1]),
}


@pytest.fixture()
def glue_dir(tmp_path):
    for name, text in FIXTURES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    return tmp_path


def test_all_nine_tasks_are_known():
    assert sorted(TASKS) == sorted(["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli",
                                    "rte", "wnli"])
    assert get_task("SST-2") is TASKS["sst2"]
    with pytest.raises(ValueError, match="--train-file"):
        get_task("squad")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_fixture_parsing(glue_dir, name):
    split, first, labels = EXPECTED[name]
    parsed = read_split(glue_dir, get_task(name), split)
    assert parsed.texts[0] == first
    assert parsed.labels == labels
    assert all(isinstance(y, float if name == "stsb" else int) for y in parsed.labels)


def test_mnli_has_matched_then_mismatched_dev(glue_dir):
    task = get_task("mnli")
    (glue_dir / "MNLI" / "train.tsv").write_bytes(FIXTURES["MNLI/dev_mismatched.tsv"].encode())
    data = load_glue(task, glue_dir)
    assert list(data.dev) == ["dev_matched", "dev_mismatched"]
    assert data.selection_split == "dev_matched"
    assert data.dev["dev_mismatched"].labels == [0]


def test_bad_labels_and_columns_are_named(glue_dir):
    path = glue_dir / "RTE" / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match=r"dev.tsv:2: unknown label 'maybe'"):
        read_split(glue_dir, get_task("rte"), "dev")
    path.write_text("index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match="no column 'sentence1'"):
        read_split(glue_dir, get_task("rte"), "dev")
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\n")  # short: only QQP skips
    with pytest.raises(ValueError, match="expected 4 columns, got 2"):
        read_split(glue_dir, get_task("rte"), "dev")
    with pytest.raises(FileNotFoundError, match="--data-dir must hold CoLA/train.tsv"):
        read_split(glue_dir, get_task("cola"), "train")


@pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs ../shared/data/glue")
@pytest.mark.parametrize("name,rows", [("cola", (8551, 1043)), ("sst2", (67349, 872)),
                                       ("mrpc", (3668, 408)), ("stsb", (5749, 1500)),
                                       ("rte", (2490, 277)), ("wnli", (635, 71))])
def test_local_glue_row_counts(name, rows):
    """The counts of SOURCES.md: every row read, none dropped or split by a stray quote."""
    data = load_glue(get_task(name), GLUE_DIR)
    assert (len(data.train), len(data.dev["dev"])) == rows


# ------------------------------------------------------------------------------- the hub
HUB_RECORDS = {
    "mnli": {"train": [{"premise": "P", "hypothesis": "H", "label": 2, "idx": 0}],
             "validation_matched": [{"premise": "M", "hypothesis": "N", "label": 0, "idx": 0}],
             "validation_mismatched": [{"premise": "X", "hypothesis": "Y", "label": 1,
                                        "idx": 0}]},
    "qqp": {"train": [{"question1": "a?", "question2": "b?", "label": 1, "idx": 0}],
            "validation": [{"question1": "c?", "question2": "d?", "label": 0, "idx": 0}]},
    "qnli": {"train": [{"question": "q", "sentence": "s", "label": 1, "idx": 0}],
             "validation": [{"question": "q2", "sentence": "s2", "label": 0, "idx": 0}]},
}


@pytest.fixture()
def fake_hub(monkeypatch):
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        if name not in HUB_RECORDS:
            raise ConnectionError("offline")
        return HUB_RECORDS[name][split]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


@pytest.mark.parametrize("name", ["mnli", "qqp", "qnli"])
def test_hub_tasks_parse(fake_hub, name):
    data = load_glue(get_task(name), None)
    assert all(call[0] == glue.HUB_DATASET and call[1] == name for call in fake_hub)
    record = HUB_RECORDS[name]["train"][0]
    assert data.train.labels == [record["label"]]
    assert len(data.train.texts[0]) == 2
    if name == "mnli":
        assert list(data.dev) == ["dev_matched", "dev_mismatched"]
        assert data.dev["dev_matched"].texts == [("M", "N")]
        assert data.spec.labels[2] == "contradiction"


def test_hub_offline_says_to_pass_data_dir(fake_hub):
    with pytest.raises(ValueError, match="offline.*--data-dir"):
        load_glue(get_task("rte"), None)


def test_hub_records_with_a_wrong_field_or_test_label(fake_hub):
    with pytest.raises(ValueError, match="no field 'question1'"):
        from_records(get_task("qqp"), [{"q1": "a", "q2": "b", "label": 0}], "src")
    with pytest.raises(ValueError, match="label -1 is not a class"):
        from_records(get_task("rte"), [{"sentence1": "a", "sentence2": "b", "label": -1}], "s")


def test_no_datasets_package_says_to_pass_data_dir(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(ValueError, match="not installed; pass --data-dir"):
        load_glue(get_task("mnli"), None)


# ------------------------------------------------------------------------------- metrics
def test_glue_metrics_on_known_values():
    pred, gold = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    scores = glue_metrics("f1", pred, gold)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["f1"] == pytest.approx(2 * 2 / (3 + 3))  # tp 2, fp 1, fn 1
    # MCC from its definition: (tp*tn - fp*fn) / sqrt(...) = (2*1 - 1*1) / sqrt(3*3*2*2)
    assert glue_metrics("mcc", pred, gold)["mcc"] == pytest.approx(1 / 6)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 3.0, 2.0, 10.0])
    stsb = glue_metrics("spearman", x, y)
    assert stsb["spearman"] == pytest.approx(0.8)  # ranks 1,2,3,4 vs 1,3,2,4
    assert stsb["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert glue_metrics("mcc", np.zeros(4), np.array([0, 1, 0, 1]))["mcc"] == 0.0
