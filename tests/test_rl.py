"""RL core: group advantages and MT-GRPO by hand, the clipped loss and its gradients, rewards."""

import math

import pytest
import torch

from nanoparl.rl import (DEFAULT_WEIGHTS, composite_reward, expand_advantages, grpo_advantages,
                         mt_grpo_advantages, outcome_reward, policy_loss, token_logprobs,
                         turn_rewards, zero_advantage_share)

R2 = math.sqrt(2.0)

# ----------------------------------------------------------------------------
# advantages


def test_grpo_balanced_group_is_plus_minus_one():
    adv = grpo_advantages([1.0, 0.0, 0.0, 1.0], [7, 7, 7, 7])
    # mean 0.5, population std 0.5 -> +-1 (the sample std would give +-0.866)
    assert adv.dtype == torch.float32
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)


def test_grpo_equal_rewards_give_exact_zero():
    r = [0.1 + 0.2] * 3 + [5.0]  # 0.30000000000000004: its float mean is not bit-equal to it
    adv = grpo_advantages(r, ["a", "a", "a", "b"])  # b is a group of one
    assert torch.equal(adv, torch.zeros(4))
    assert not torch.isnan(adv).any()
    assert zero_advantage_share(r, ["a", "a", "a", "b"]) == 1.0


def test_grpo_groups_are_independent():
    adv = grpo_advantages(torch.tensor([1.0, 5.0, 0.0, 7.0]), ["a", "b", "a", "b"])
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    # three rollouts: [2, 0, 1] -> mean 1, population std sqrt(2/3)
    adv = grpo_advantages([2.0, 0.0, 1.0, 3.0, 3.0], [0, 0, 0, 1, 1])
    s = math.sqrt(2 / 3)
    assert torch.allclose(adv, torch.tensor([1 / s, -1 / s, 0.0, 0.0, 0.0]), atol=1e-5)
    assert zero_advantage_share([2.0, 0.0, 1.0, 3.0, 3.0], [0, 0, 0, 1, 1]) == 0.5


def test_mt_grpo_by_hand():
    # group "g": three rollouts; the third stopped after one turn. lam = 0.5.
    turns = [[1.0, 1.0], [0.0, 1.0], [1.0], [0.0], [2.0]]
    outcome = [1.0, 0.0, 0.0, 0.0, 1.0]
    groups = ["g", "g", "g", "h", "h"]
    adv = mt_grpo_advantages(turns, outcome, groups, lam=0.5)
    # outcome [1, 0, 0]: mean 1/3, std sqrt(2)/3 -> [sqrt2, -1/sqrt2, -1/sqrt2]
    # turn 0  [1, 0, 1]: mean 2/3, std sqrt(2)/3 -> [1/sqrt2, -sqrt2, 1/sqrt2]
    # turn 1  [1, 1] (rollouts 0 and 1 only): all equal -> [0, 0]
    # group "h": outcome [0, 1] -> [-1, 1]; turn 0 [0, 2] -> [-1, 1]
    want = [[1 / R2 + 0.5 * R2, 0.0 + 0.5 * R2],   # [sqrt2, 1/sqrt2]
            [-R2 - 0.5 / R2, 0.0 - 0.5 / R2],      # [-1.7678, -0.3536]
            [1 / R2 - 0.5 / R2],                   # [0.3536]
            [-1.0 - 0.5],
            [1.0 + 0.5]]
    assert len(adv) == 5
    for a, w in zip(adv, want):
        assert a.dtype == torch.float32 and a.shape == (len(w),)
        assert torch.allclose(a, torch.tensor(w), atol=1e-5), (a, w)
    # lam = 0: pure turn-level credit
    adv0 = mt_grpo_advantages(turns, outcome, groups, lam=0.0)
    assert torch.allclose(adv0[1], torch.tensor([-R2, 0.0]), atol=1e-5)


def test_expand_advantages():
    turn_of_token = torch.tensor([[-1, 0, 0, 1, 1], [-1, 0, 1, -1, -1]])
    per_rollout = expand_advantages(torch.tensor([2.0, -1.0]), turn_of_token)
    assert torch.equal(per_rollout, torch.tensor([[0, 2, 2, 2, 2], [0, -1, -1, 0, 0.0]]))
    per_turn = expand_advantages([torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -2.0])],
                                 turn_of_token)
    assert torch.equal(per_turn, torch.tensor([[0, 1, 1, 3, 3], [0, -1, -2, 0, 0.0]]))


# ----------------------------------------------------------------------------
# losses


def test_token_logprobs_matches_log_softmax():
    torch.manual_seed(0)
    logits, tokens = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    want = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, tokens), want, atol=1e-6)


def test_first_inner_step_ratio_is_exactly_one():
    torch.manual_seed(0)
    logp_old = -torch.rand(3, 6) * 3
    logp_new = logp_old.clone().requires_grad_(True)
    adv = torch.randn(3, 6)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1]])
    loss, stats = policy_loss(logp_new, logp_old, adv, mask)
    assert stats["ratio_mean"] == 1.0 and stats["ratio_max"] == 1.0 and stats["clip_frac"] == 0.0
    assert torch.allclose(loss, -(adv * mask).sum() / mask.sum(), atol=1e-6)
    assert stats["n_tokens"] == 11


def test_token_level_normalisation():
    # row 0: one sampled token with A = 3; row 1: three sampled tokens with A = 1
    adv = torch.tensor([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), adv, mask)
    assert loss.item() == pytest.approx(-(3 + 1 + 1 + 1) / 4)  # not -(3 + 1) / 2 per sequence
    loss.backward()
    assert torch.allclose(logp.grad, -adv * mask / 4)  # each sampled token weighs 1/4
    # a micro-batch normalised by the whole batch's count
    loss, _ = policy_loss(logp, logp.detach(), adv, mask, num_tokens=8)
    assert loss.item() == pytest.approx(-6 / 8)


@pytest.mark.parametrize("ratio, adv, clipped", [
    (1.5, 1.0, True),    # beyond 1 + clip, A > 0: held at 1.2 * A, no gradient
    (1.5, -1.0, False),  # beyond 1 + clip, A < 0: the pessimistic (unclipped) term wins
    (0.5, 1.0, False),   # below 1 - clip, A > 0: unclipped
    (0.5, -1.0, True),   # below 1 - clip, A < 0: held at 0.8 * A, no gradient
    (1.1, 1.0, False),   # inside the trust region
])
def test_clipping(ratio, adv, clipped):
    logp_new = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, stats = policy_loss(logp_new, torch.zeros(1, 1), torch.tensor([[adv]]),
                              torch.ones(1, 1), clip=0.2)
    loss.backward()
    bound = min(max(ratio, 0.8), 1.2)
    assert loss.item() == pytest.approx(-min(ratio * adv, bound * adv), rel=1e-6)
    assert stats["clip_frac"] == float(clipped)
    if clipped:
        assert logp_new.grad.item() == 0.0
    else:
        assert logp_new.grad.item() == pytest.approx(-adv * ratio, rel=1e-6)


def test_masked_tokens_get_exactly_zero_gradient():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]])
    logp_new = (-torch.rand(2, 4)).masked_fill(mask == 0, 200.0)  # garbage: exp would overflow
    logp_new.requires_grad_(True)
    logp_old = -torch.rand(2, 4)
    logp_ref = -torch.rand(2, 4)
    adv = torch.randn(2, 4).masked_fill(mask == 0, float("nan"))  # garbage there too
    loss, stats = policy_loss(logp_new, logp_old, adv, mask, logp_ref=logp_ref, kl_coef=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp_new.grad).all()
    assert (logp_new.grad[mask == 0] == 0).all()
    assert (logp_new.grad[mask == 1] != 0).all()


def test_kl_is_zero_at_reference_and_positive_away():
    logp_new = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0]])
    adv = torch.zeros(1, 3)
    loss, stats = policy_loss(logp_new, logp_new.detach(), adv, mask,
                              logp_ref=logp_new.detach(), kl_coef=1.0)
    assert stats["kl"] == 0.0 and loss.item() == 0.0
    # ref - new = +1 on the first token and -1 on the second: k3 = (e - 2 + 1/e) / 2 per token
    ref = logp_new.detach() + torch.tensor([[1.0, -1.0, 5.0]])
    loss, stats = policy_loss(logp_new, logp_new.detach(), adv, mask, logp_ref=ref, kl_coef=0.5)
    kl = (math.e - 2 + 1 / math.e) / 2
    assert stats["kl"] == pytest.approx(kl, rel=1e-6) and stats["kl"] > 0
    assert loss.item() == pytest.approx(0.5 * kl, rel=1e-6)


# ----------------------------------------------------------------------------
# rewards on hand-made trajectories


def step(kind="calls", n_calls=1, n_errors=0, text=""):
    return {"text": text, "kind": kind, "n_calls": n_calls if kind == "calls" else 0,
            "n_errors": n_errors}


def turn(steps, summary=None, gt=1, facts=()):
    return {"steps": steps, "summary": summary, "gt_steps": gt, "needed_facts": list(facts)}


def traj(policy, turns, turn_passed, error_type=None):
    return {"policy": policy, "passed": all(turn_passed), "turn_passed": turn_passed,
            "error_type": error_type, "turns": turns}


def perfect():
    # turn 1 books a flight (the tool returns booking 4821), turn 2 insures that booking
    return traj("awareness", [
        turn([step(), step("text")], summary="logged in; booking 4821", gt=1),
        turn([step(), step("text")], summary="booking 4821 insured", gt=1, facts=["4821"]),
    ], [True, True])


def test_perfect_trajectory_maxes_every_component():
    total, c = composite_reward(perfect())
    assert c == {"format": 1.0, "validity": 1.0, "success": 1.0, "progress": 1.0,
                 "efficiency": 0.0, "awareness": 1.0}
    best = sum(w for k, w in DEFAULT_WEIGHTS.items() if k != "efficiency")
    assert total == pytest.approx(best)
    assert outcome_reward(perfect()) == (1.0, {"success": 1.0})
    r, parts = turn_rewards(perfect())
    assert r == pytest.approx([1.2, 1.2]) and parts["passed"] == [1.0, 1.0]


def test_redundant_calls_cost_efficiency_not_success():
    t = traj("history", [
        turn([step(n_calls=2), step("text")], gt=1),                 # one call too many
        turn([step(), step(n_calls=1, n_errors=1), step("text")], gt=1),  # a failed retry
    ], [True, True])
    total, c = composite_reward(t)
    assert c["success"] == 1.0 and c["progress"] == 1.0
    assert c["efficiency"] == pytest.approx(-2 / 2) and c["efficiency"] < 0  # 2 extra / 2 gt
    assert c["validity"] == pytest.approx(1 - 1 / 4)
    assert c["awareness"] == 0.0  # history policy: not scored ...
    w = dict(DEFAULT_WEIGHTS)
    assert total == pytest.approx(w["success"] + w["progress"] + w["format"]
                                  + w["validity"] * 0.75 - w["efficiency"])
    # ... and its weight has no effect on the total
    assert composite_reward(t, {"awareness": 5.0})[0] == pytest.approx(total)
    # turn 2 alone: passed, 3/3 well-formed, validity 1/2
    assert turn_rewards(t)[0] == pytest.approx([1.0 + 0.1 + 0.1, 1.0 + 0.1 + 0.05])


def test_unparseable_steps_lower_format_and_fail():
    t = traj("history", [
        turn([step("malformed", text="[book_flight(")]),       # no call executed: empty turn
        turn([step(), step("text")]),
    ], [False, True], error_type="empty_turn")
    total, c = composite_reward(t)
    assert c["format"] == pytest.approx(2 / 3) and c["format"] < 1
    assert c["success"] == 0.0 and c["progress"] == 0.5
    assert outcome_reward(t)[0] == 0.0
    assert turn_rewards(t)[0] == pytest.approx([0.0 + 0.0 + 0.0, 1.2])  # no call where gt has one


def test_declining_a_turn_that_needs_calls_never_pays():
    """The decline guard: a turn whose ground truth has calls and in which the policy makes none
    (a plain reply: "None of the available functions can do that") scores below a correct call and no better than a call
    list that fails, in MT-GRPO's turn reward and in the composite reward. A turn whose ground truth
    has no call may decline at full validity."""
    declined = turn([step("text")], gt=1)
    correct = turn([step(), step("text")], gt=1)
    failed = turn([step(n_errors=1), step("text")], gt=1)
    (r_dec,), _ = turn_rewards(traj("history", [declined], [False]))
    (r_ok,), _ = turn_rewards(traj("history", [correct], [True]))
    (r_bad,), parts = turn_rewards(traj("history", [failed], [False]))
    assert r_dec < r_ok and r_dec <= r_bad
    assert r_dec == pytest.approx(0.1)  # format only: a well-formed reply
    for policy, summary in (("history", None), ("awareness", "ok")):
        def whole(t2, passed):
            return composite_reward(traj(policy, [correct if policy == "history" else
                                                  turn([step(), step("text")], summary="ok"), t2],
                                         [True, passed]))[0]
        dec = turn([step("text")], summary=summary, gt=1)
        ok = turn([step(), step("text")], summary=summary, gt=1)
        bad = turn([step(n_errors=1), step("text")], summary=summary, gt=1)
        assert whole(dec, False) < whole(ok, True)
        assert whole(dec, False) == pytest.approx(whole(bad, False))  # as a call that errors
        # a whole trajectory of declines: validity 0, as low as calls that all fail
        all_dec = composite_reward(traj(policy, [dec, dec], [False, False]))[1]
        all_bad = composite_reward(traj(policy, [bad, bad], [False, False]))[1]
        assert all_dec["validity"] == all_bad["validity"] == 0.0
    # nothing to call: declining is right and keeps full validity
    (r_none,), parts = turn_rewards(traj("history", [turn([step("text")], gt=0)], [True]))
    assert parts["validity"] == [1.0] and r_none == pytest.approx(1.2)


def test_forgotten_id_lowers_awareness_and_fails_the_turn():
    t = traj("awareness", [
        turn([step(), step("text")], summary="user alice; order 7731 placed"),
        # the summary dropped the order id; the cancel call guesses one and errors
        turn([step(n_errors=1), step("text")], summary="user alice", facts=["7731", "alice"]),
        turn([step(), step("text")], summary="user alice", facts=["alice"]),
    ], [True, False, True], error_type="state_mismatch")
    total, c = composite_reward(t)
    assert c["awareness"] == pytest.approx(2 / 3) and c["awareness"] < 1  # found 2 of 3 facts
    assert c["success"] == 0.0 and c["progress"] == pytest.approx(2 / 3)
    assert c["validity"] == pytest.approx(2 / 3)
    # a missing summary makes the first step of that turn ill-formed (awareness policy only)
    t["turns"][2]["summary"] = None
    c = composite_reward(t)[1]
    assert c["format"] == pytest.approx(5 / 6) and c["awareness"] == pytest.approx(1 / 3)


def test_unknown_weight_is_an_error():
    with pytest.raises(KeyError):
        composite_reward(perfect(), {"sucess": 1.0})
