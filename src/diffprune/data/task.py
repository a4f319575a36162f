"""What a task is to the trainer: its labels and metric, and its examples."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """A task's identity and scoring; GLUE tasks and own data alike."""

    name: str
    labels: tuple[str, ...] | None  # None = regression
    metric: str  # the headline metric: accuracy, f1, mcc or spearman

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def problem_type(self) -> str:
        return "regression" if self.labels is None else "single_label_classification"

    def to_dict(self) -> dict:
        """What a task file records about its task."""
        return {"name": self.name, "labels": list(self.labels or []),
                "num_labels": self.num_labels, "problem_type": self.problem_type,
                "metric": self.metric}

    @classmethod
    def from_dict(cls, info: dict) -> TaskSpec:
        regression = info.get("problem_type") == "regression"
        labels = None if regression else tuple(info.get("labels") or
                                               map(str, range(info.get("num_labels", 2))))
        metric = info.get("metric") or ("spearman" if regression else "accuracy")
        return cls(info.get("name", "task"), labels, metric)


@dataclass
class Split:
    """Examples of one split: a tuple of texts (one or two) and a label per example."""

    texts: list[tuple[str, ...]]
    labels: list[int | float]

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Split:
        """The first ``n`` examples (all when ``n`` is 0)."""
        return self if n <= 0 else Split(self.texts[:n], self.labels[:n])


@dataclass
class TaskData:
    """A task with its training split and dev splits; the first dev split selects the model."""

    spec: TaskSpec
    train: Split
    dev: dict[str, Split] = field(default_factory=dict)

    @property
    def selection_split(self) -> str:
        return next(iter(self.dev))
