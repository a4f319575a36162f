"""Wrapping models: step 0 is the pretrained model, projection, the fixed mask, merge."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_bert, tiny_gpt2_lm, tiny_mlp, tiny_roberta, token_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune import DiffPruneConfig, get_diffprune_model, nonadaptive_from_finetuned
from diffprune.targets import find_head_names

FAST = dict(fused=False)


def _outputs(model, inputs):
    with torch.no_grad():
        out = model(inputs) if isinstance(model, torch.nn.Sequential) or (
            hasattr(model, "base_model") and isinstance(model.base_model, torch.nn.Sequential)
        ) else model(input_ids=inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


CASES = [
    ("bert", tiny_bert, token_batch),
    ("roberta", tiny_roberta, token_batch),
    ("gpt2-lm-tied", tiny_gpt2_lm, token_batch),
    ("mlp", tiny_mlp, lambda: torch.randn(4, 6)),
]


@pytest.mark.parametrize("structured", [True, False])
@pytest.mark.parametrize("name,make,inputs", CASES, ids=[c[0] for c in CASES])
def test_step_zero_equals_pretrained(name, make, inputs, structured):
    model = make()
    x = inputs()
    expected = _outputs(model, x)
    wrapped = get_diffprune_model(model, DiffPruneConfig(structured=structured, **FAST)).eval()
    torch.testing.assert_close(_outputs(wrapped, x), expected, rtol=0, atol=1e-6)


def test_head_found_from_the_model_not_its_name():
    assert find_head_names(tiny_bert()) == ["classifier.weight", "classifier.bias"]
    assert find_head_names(tiny_roberta()) == [
        "classifier.dense.weight", "classifier.dense.bias",
        "classifier.out_proj.weight", "classifier.out_proj.bias"]
    # GPT-2's LM head is tied to the embeddings: it is backbone, gated once.
    assert find_head_names(tiny_gpt2_lm()) == ["lm_head.weight"]
    assert find_head_names(tiny_mlp()) == []
    head = ["3.weight", "3.bias"]
    assert find_head_names(tiny_mlp(), missing_keys=head) == head


def test_head_is_dense_and_not_gated():
    wrapped = get_diffprune_model(tiny_bert(), DiffPruneConfig(**FAST))
    gated = {s.name for s in wrapped.sites}
    assert "classifier.weight" not in gated and "bert.pooler.dense.weight" in gated
    head_group = [g for g in wrapped.param_groups() if g["name"] == "head"][0]
    assert sum(p.numel() for p in head_group["params"]) == 16 * 2 + 2


def test_tied_weights_get_one_diff():
    model = tiny_gpt2_lm()
    wrapped = get_diffprune_model(model, DiffPruneConfig(**FAST))
    tied = [s for s in wrapped.sites if len(s.owners) > 1]
    assert len(tied) == 1 and set(tied[0].aliases) == {"transformer.wte.weight", "lm_head.weight"}
    wrapped.train()
    wrapped.tensor(tied[0], "diff").data.fill_(0.01)
    wrapped(input_ids=token_batch())
    assert model.transformer.wte.weight is model.lm_head.weight
    assert not torch.equal(model.lm_head.weight, wrapped.tensor(tied[0], "base"))


def _train_steps(wrapped, x, steps=3):
    opt = torch.optim.AdamW(wrapped.param_groups(), lr=1e-2)
    wrapped.train()
    for _ in range(steps):
        out = wrapped(input_ids=x, labels=torch.tensor([0, 1, 1]))
        (out.loss + wrapped.penalty()).backward()
        wrapped.clip_grad_norms()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("density", [0.01, 0.1, 0.5])
def test_projection_keeps_exactly_k(density):
    wrapped = get_diffprune_model(tiny_bert(), DiffPruneConfig(**FAST))
    _train_steps(wrapped, token_batch())
    k = wrapped.project(density)
    assert k == round(density * wrapped.num_gated) == wrapped.nonzero_count()
    diffs = wrapped.sample_diff()
    assert sum(int((d != 0).sum()) for d in diffs) <= k


def test_projection_is_one_global_threshold_with_ties_by_position():
    wrapped = get_diffprune_model(tiny_mlp(), DiffPruneConfig(**FAST))
    diffs = [torch.zeros_like(wrapped.tensor(s, "base"), dtype=torch.float32)
             for s in wrapped.sites]
    diffs[0].view(-1)[5] = 3.0
    diffs[2].view(-1)[0] = -2.0
    diffs[1].view(-1)[:] = 1.0  # 8 tied entries; 2 are kept, the lowest positions
    wrapped.set_diff(diffs, density=4 / wrapped.num_gated)
    kept = {s.name: wrapped.tensor(s, "indices").tolist() for s in wrapped.sites}
    assert kept == {"0.weight": [5], "0.bias": [0, 1], "2.weight": [0], "2.bias": [],
                    "3.weight": [], "3.bias": []}


def test_fixed_mask_stage_changes_nothing_outside_the_mask():
    wrapped = get_diffprune_model(tiny_bert(), DiffPruneConfig(**FAST))
    x = token_batch()
    _train_steps(wrapped, x)
    wrapped.project(0.05)
    assert not any("log_alpha" in n or n.endswith("_diff") for n, _ in wrapped.named_parameters())
    before = [d.clone() for d in wrapped.sample_diff()]
    _train_steps(wrapped, x)
    after = wrapped.sample_diff()
    for site, b, a in zip(wrapped.sites, before, after):
        outside = torch.ones(b.numel(), dtype=torch.bool)
        outside[wrapped.tensor(site, "indices")] = False
        assert (a.view(-1)[outside] == 0).all()
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("name,make,inputs", CASES, ids=[c[0] for c in CASES])
def test_merge_gives_a_plain_model_with_the_same_outputs(name, make, inputs):
    wrapped = get_diffprune_model(make(), DiffPruneConfig(**FAST))
    sites = wrapped.sites
    for site in sites:
        wrapped.tensor(site, "diff").data.normal_(0, 0.05)
    wrapped.project(0.2)
    wrapped.eval()
    x = inputs()
    expected = _outputs(wrapped, x)
    merged = wrapped.merge_and_unload()
    assert not any("diffprune" in n for n, _ in merged.named_parameters())
    assert not any("diffprune" in n for n, _ in merged.named_buffers())
    torch.testing.assert_close(_outputs(merged, x), expected, rtol=0, atol=1e-6)
    if name == "gpt2-lm-tied":
        assert merged.transformer.wte.weight is merged.lm_head.weight
    fresh = make()
    fresh.load_state_dict(merged.state_dict())
    torch.testing.assert_close(_outputs(fresh, x), expected, rtol=0, atol=1e-6)


def test_merge_before_projection_is_refused():
    wrapped = get_diffprune_model(tiny_mlp(), DiffPruneConfig(**FAST))
    with pytest.raises(RuntimeError, match="project"):
        wrapped.merge_and_unload()


def test_nonadaptive_takes_the_finetuned_diff():
    pretrained = tiny_bert()
    finetuned = copy.deepcopy(pretrained)
    with torch.no_grad():
        finetuned.bert.encoder.layer[0].attention.self.query.weight[2, 3] += 0.5
        finetuned.bert.pooler.dense.bias[1] -= 0.25
        finetuned.classifier.weight.fill_(0.125)

    def kept(density):
        wrapped = nonadaptive_from_finetuned(copy.deepcopy(pretrained), finetuned,
                                             DiffPruneConfig(**FAST), density=density)
        assert wrapped.stage == "masked"
        assert (wrapped.base_model.classifier.weight == 0.125).all()
        return {s.name: (wrapped.tensor(s, "indices").tolist(),
                         wrapped.tensor(s, "values").tolist())
                for s in wrapped.sites if wrapped.tensor(s, "indices").numel()}

    total = sum(p.numel() for n, p in pretrained.named_parameters() if "classifier" not in n)
    assert kept(1 / total) == {
        "bert.encoder.layer.0.attention.self.query.weight": ([2 * 16 + 3], [pytest.approx(0.5)])}
    two = kept(2 / total)
    assert two["bert.pooler.dense.bias"] == ([1], [pytest.approx(-0.25)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_nonadaptive_takes_a_finetuned_model_on_another_device():
    # The recipe finetunes on the accelerator; the diff is taken where the pretrained model is.
    pretrained = tiny_bert()
    finetuned = copy.deepcopy(pretrained).cuda()
    with torch.no_grad():
        finetuned.bert.pooler.dense.bias[1] -= 0.25
    total = sum(p.numel() for n, p in pretrained.named_parameters() if "classifier" not in n)
    wrapped = nonadaptive_from_finetuned(pretrained, finetuned, DiffPruneConfig(**FAST),
                                         density=1 / total)
    site = next(s for s in wrapped.sites if s.name == "bert.pooler.dense.bias")
    assert wrapped.tensor(site, "indices").tolist() == [1]


def test_expected_l0_falls_and_penalty_drives_log_alpha_down():
    wrapped = get_diffprune_model(tiny_bert(), DiffPruneConfig(l0_lambda=1.0, **FAST))
    before = wrapped.expected_l0()
    assert before == pytest.approx(wrapped.num_gated * 0.9933071 + len(wrapped.sites) * 0.9933071,
                                   rel=1e-5)
    _train_steps(wrapped, token_batch(), steps=5)
    assert wrapped.expected_l0() < before
    assert wrapped.expected_density() < 0.9933


def test_paper_penalty_form_is_the_product():
    wrapped = get_diffprune_model(tiny_mlp(), DiffPruneConfig(structured_penalty="paper", **FAST))
    site = wrapped.sites[0]
    wrapped.tensor(site, "group_log_alpha").data.fill_(0.0)
    wrapped(torch.randn(2, 6))
    n0 = site.param.numel()
    rest = wrapped.num_gated - n0
    expected = 0.9933071 * (0.5 * n0 + 0.9933071 * rest)
    penalty = float(wrapped.penalty()) / wrapped.diffprune_config.l0_lambda
    assert penalty == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("group_lr", [None, 0.01])
def test_group_gates_take_their_own_learning_rate(group_lr):
    from diffprune.optim import build_optimizer

    config = DiffPruneConfig(l0_lambda=1.0, log_alpha_lr=1.0, group_log_alpha_lr=group_lr, **FAST)
    wrapped = get_diffprune_model(tiny_bert(), config).train()
    optimizer, scheduler = build_optimizer(wrapped, num_training_steps=10)
    names = [g["name"] for g in optimizer.param_groups]
    assert ("group_log_alpha" in names) == (group_lr is not None)
    # With w = 0 only the penalty moves log-alpha, and Adam's first step is lr * sign(grad).
    wrapped(input_ids=token_batch())
    wrapped.penalty().backward()
    wrapped.clip_grad_norms()
    optimizer.step()
    scheduler.step()
    site = wrapped.sites[0]
    element_step = 5.0 - wrapped.tensor(site, "log_alpha").detach()
    group_step = 5.0 - float(wrapped.tensor(site, "group_log_alpha"))
    assert torch.allclose(element_step, torch.ones_like(element_step), rtol=1e-3)
    assert group_step == pytest.approx(group_lr or 1.0, rel=1e-3)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["log_alpha"] == 1.0 and lrs.get("group_log_alpha", group_lr) == group_lr  # constant


def test_config_validation():
    with pytest.raises(ValueError, match="structured_penalty"):
        DiffPruneConfig(structured_penalty="mean")
    with pytest.raises(ValueError, match="density"):
        DiffPruneConfig(density=0.0)
    with pytest.raises(ValueError, match="stretch"):
        DiffPruneConfig(stretch_left=0.1)
    with pytest.raises(ValueError, match="group_log_alpha_lr"):
        DiffPruneConfig(group_log_alpha_lr=0.0)
    with pytest.raises(ValueError, match="unknown"):
        DiffPruneConfig.from_dict({"lambda": 1.0})
    cfg = DiffPruneConfig(density=0.01)
    assert DiffPruneConfig.from_dict(cfg.to_dict()) == cfg


def test_patterns_choose_gated_tensors():
    cfg = DiffPruneConfig(target_patterns=[r"encoder\.layer\.1\."], **FAST)
    wrapped = get_diffprune_model(tiny_bert(), cfg)
    assert all("encoder.layer.1." in s.name for s in wrapped.sites)
    with pytest.raises(ValueError, match="no parameter"):
        get_diffprune_model(tiny_bert(), DiffPruneConfig(target_patterns=["nothing"], **FAST))


def test_slots_left_at_zero_go_to_the_most_open_gates():
    # The L0 stage may close gates below the budget; the rest of the mask then sits at
    # |delta| = 0 and is ranked by the gates' P(z > 0), not by position.
    wrapped = get_diffprune_model(tiny_mlp(), DiffPruneConfig(structured=False, **FAST))
    first, last = wrapped.sites[0], wrapped.sites[-1]
    for site in wrapped.sites:
        wrapped.tensor(site, "log_alpha").data.fill_(-20.0)  # dead gates: z = 0 everywhere
    wrapped.tensor(last, "log_alpha").data.view(-1)[1] = 30.0  # always open, but w = 0
    wrapped.tensor(first, "log_alpha").data.view(-1)[4] = 30.0
    wrapped.tensor(first, "diff").data.view(-1)[4] = 0.5  # the one real nonzero
    wrapped.project(2 / wrapped.num_gated)
    kept = {s.name: wrapped.tensor(s, "indices").tolist() for s in wrapped.sites
            if wrapped.tensor(s, "indices").numel()}
    assert kept == {first.name: [4], last.name: [1]}


def _loss_and_grads(make, config, ids):
    torch.manual_seed(0)
    model = get_diffprune_model(make(), config)
    with torch.no_grad():  # a diff and gates away from their start, so every term counts
        for site in model.sites:
            model.tensor(site, "diff").normal_(0, 0.05)
            model.tensor(site, "log_alpha").normal_(0, 2)
    torch.manual_seed(1)
    out = model(input_ids=ids, labels=ids[:, 0] % 2 if make is tiny_bert else ids)
    loss = out.loss + 1e3 * model.penalty()
    loss.backward()
    return model, loss.detach(), {n: p.grad for n, p in model.named_parameters()
                                  if p.grad is not None}


@pytest.mark.parametrize("structured", [True, False])
@pytest.mark.parametrize("name,make", [("bert", tiny_bert), ("gpt2-lm-tied", tiny_gpt2_lm)])
def test_embedding_rows_give_the_whole_tables_loss_and_gradients(name, make, structured):
    """Gating only the looked-up rows of an embedding table changes nothing a step computes,
    padding and repeated tokens included; a table tied to an output layer keeps the whole pass."""
    ids = token_batch()
    ids[0, -3:] = 0  # the padding token, three times
    ids[1, :2] = ids[2, 3]  # a token repeated across examples
    rows, loss, grads = _loss_and_grads(make, DiffPruneConfig(structured=structured, **FAST), ids)
    _, ref_loss, ref_grads = _loss_and_grads(
        make, DiffPruneConfig(structured=structured, gather_embedding_gates=False, **FAST), ids)
    gathered = {rows.sites[i].name for i in rows._row_gates}
    if name == "bert":
        assert "bert.embeddings.word_embeddings.weight" in gathered
    else:
        assert "transformer.wte.weight" not in gathered  # tied to lm_head
        assert "transformer.wpe.weight" in gathered
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-5, atol=1e-7, msg=n)


def test_embedding_hooks_go_with_stage_one():
    """After projection and merge the modules carry no hook of the method."""
    wrapped = get_diffprune_model(tiny_bert(), DiffPruneConfig(**FAST))
    embeddings = [m for m in wrapped.modules() if isinstance(m, torch.nn.Embedding)]
    assert all(len(m._forward_hooks) == 1 for m in embeddings)
    wrapped(input_ids=token_batch())
    wrapped.project(0.1)
    assert all(len(m._forward_hooks) == 0 for m in embeddings)
    merged = wrapped.merge_and_unload()
    assert not any(m._forward_hooks for m in merged.modules())


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-4, 1e3), edge=st.booleans(), max_norm=st.sampled_from([0.0, 0.5, 1.0]))
def test_clipping_gives_torch_clip_grad_norm_bits(scale, edge, max_norm):
    """clip_grad_norms skips the multiply where torch's clamped coefficient is 1: the same
    gradients, bit for bit, as torch.nn.utils.clip_grad_norm_, also at the limit itself."""
    config = DiffPruneConfig(diff_max_grad_norm=max_norm, log_alpha_max_grad_norm=1.0, **FAST)
    wrapped = get_diffprune_model(tiny_bert(), config).train()
    params = [p for p in wrapped.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(int(scale * 1000) % 2**31)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * scale
    groups = {g["name"]: g["params"] for g in wrapped.param_groups()}
    if edge:  # put the w group's norm exactly on its limit (within float rounding)
        grads = [p.grad for p in groups["diff"] + groups.get("head", [])]
        norm = float(torch.nn.utils.get_total_norm(grads))
        for g in grads:
            g.mul_((max_norm or 1.0) / norm)
    expected = {id(p): p.grad.clone() for p in params}
    for names, limit in ((("diff", "head"), max_norm), (("log_alpha", "group_log_alpha"), 1.0)):
        group = [p for n in names for p in groups.get(n, [])]
        grads = [expected[id(p)] for p in group]
        # torch's own function on copies
        copies = [torch.nn.Parameter(p.detach().clone()) for p in group]
        for c, g in zip(copies, grads):
            c.grad = g
        torch.nn.utils.clip_grad_norm_(copies, limit if limit > 0 else float("inf"))
    wrapped.clip_grad_norms()
    assert all(torch.equal(p.grad, expected[id(p)]) for p in params)


@pytest.mark.parametrize("penalty_form", ["code", "paper"])
def test_batched_group_gates_keep_the_tensor_by_tensor_draws(monkeypatch, penalty_form):
    """apply_diffs draws each tensor's group-gate noise and then its seeds, in tensor order, as
    a tensor-by-tensor pass does; the gates, computed for all tensors at once, are that pass's
    bits, and the penalty its value within float rounding (summed as a vector)."""
    import diffprune.model as model_module
    from diffprune.diff import draw_seeds
    from diffprune.gates import prob_nonzero, sample_gate

    config = DiffPruneConfig(structured=True, structured_penalty=penalty_form,
                             gather_embedding_gates=False, **FAST)
    wrapped = get_diffprune_model(tiny_bert(), config).train()
    with torch.no_grad():
        for site in wrapped.sites:  # group gates away from their clamps
            wrapped.tensor(site, "group_log_alpha").uniform_(-2.0, 2.0)
    seen = []
    real = model_module.gated_weight

    def spy(theta, w, log_alpha, group_gate, hc, fused, seeds):
        seen.append((group_gate.detach().clone(), seeds.clone()))
        return real(theta, w, log_alpha, group_gate, hc, fused, seeds)

    monkeypatch.setattr(model_module, "gated_weight", spy)
    torch.manual_seed(11)
    wrapped.apply_diffs()
    penalty = wrapped.penalty()

    torch.manual_seed(11)
    expected_penalty = 0.0
    for site, (gate, seeds), element_l0 in zip(wrapped.sites, seen, wrapped._element_l0):
        group_log_alpha = wrapped.tensor(site, "group_log_alpha")
        assert torch.equal(gate, sample_gate(group_log_alpha, wrapped.hc).detach())
        assert torch.equal(seeds, draw_seeds(seeds.device))
        p_group = float(prob_nonzero(group_log_alpha, wrapped.hc))
        expected_penalty += (float(element_l0) * p_group if penalty_form == "paper"
                             else float(element_l0) + p_group)
    assert len(seen) == len(wrapped.sites)
    assert float(penalty) == pytest.approx(config.l0_lambda * expected_penalty, rel=1e-5)
