"""A stage's state round-trips through its checkpoint record, and a retry starts from the first
try's best alone."""

from __future__ import annotations

import torch

from diffprune.training.stage import StageState


def _state() -> StageState:
    return StageState(step=12, losses=[0.7, 0.6], best_score=0.55, best_scores={"dev": {"a": 0.55}},
                      best_step=6, best_state={"w": torch.ones(2)}, control={"drift": 0.1},
                      best_stage="mask")


def test_the_record_keeps_which_stage_gave_the_best():
    state = _state()
    back = StageState.from_progress({"stage": "mask-retry", **state.progress()},
                                    state.best_state)
    assert (back.step, back.losses, back.best_score, back.best_step, back.best_stage) == \
        (12, [0.7, 0.6], 0.55, 6, "mask")


def test_a_record_from_before_best_stage_credits_its_own_stage():
    record = {"stage": "mask-retry", **_state().progress()}
    del record["best_stage"]
    assert StageState.from_progress(record, None).best_stage == "mask-retry"
    record["best_scores"] = None  # no epoch scored yet: no best to credit
    assert StageState.from_progress(record, None).best_stage is None


def test_a_retry_starts_with_only_the_best_of_the_first_try():
    first = _state()
    fresh = first.best_only()
    assert (fresh.step, fresh.losses, fresh.control) == (0, [], None)
    assert (fresh.best_score, fresh.best_scores, fresh.best_step, fresh.best_stage) == \
        (0.55, {"dev": {"a": 0.55}}, 6, "mask")
    assert fresh.best_state is first.best_state
