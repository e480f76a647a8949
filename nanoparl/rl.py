"""PAG-RL core: rewards, group advantages (GRPO, MT-GRPO) and the clipped policy loss with KL.

Everything here is pure and model-free: rewards read a plain-dict trajectory summary built by
agent.py, advantages read lists of rewards, the loss reads per-token log-probs. train_rl.py glues
them to the model and the engine.

The trajectory summary (one per rollout):
    {"policy": "history" | "awareness", "passed": bool, "turn_passed": [bool, ...],
     "error_type": str | None,
     "turns": [{"steps": [{"text": str, "kind": "calls" | "text" | "malformed",
                           "n_calls": int, "n_errors": int}, ...],
                "summary": str | None, "gt_steps": int, "needed_facts": [str, ...]}, ...]}

The paper (arXiv 2509.23206) names the reward's parts -- structural validity, functional
correctness, task success, efficiency -- but publishes no formula, weight or hyperparameter.
Every choice below is therefore OURS, not the paper's:
- The components and their exact forms (composite_reward's docstring) and DEFAULT_WEIGHTS.
- format: a step is well-formed when it parses as a call list or a plain reply; under the
  awareness policy the first step of a turn also needs its <summary> (turn["summary"] not None).
- efficiency: extra calls are counted per turn (calls beyond that turn's ground truth), so calling
  too little in one turn cannot pay for calling too much in another.
- awareness: recall pooled over all needed facts of the task (not a mean of per-turn recalls); it
  counts only under the awareness policy (under history there is no summary to score).
- MT-GRPO's turn reward (turn_rewards) and its generalisation from two turns to many
  (mt_grpo_advantages, default lam 1.0); the original MT-GRPO, with two turns, gives the last
  turn the outcome advantage only.
- Group standardisation uses the population std (ddof=0), and a group whose rewards are all equal
  gets exactly zero advantage.
- The loss normalises at token level (DAPO style), and the KL to the reference model is the k3
  estimator added to the loss (not folded into the reward).
Advantages are returned as float32 torch tensors throughout.
"""

import torch

# ----------------------------------------------------------------------------
# rewards

# our weights (the paper's are not public); success dominates, the dense parts shape
DEFAULT_WEIGHTS = {
    "success": 1.0,     # the checker passes the whole task
    "progress": 0.5,    # share of user turns passed: partial credit on long tasks
    "format": 0.2,      # share of well-formed steps
    "validity": 0.2,    # share of executed calls that did not return an Error
    "efficiency": 0.1,  # the component is a penalty in [-1, 0]
    "awareness": 0.2,   # recall of needed facts in the summaries (awareness policy only)
}

# MT-GRPO turn reward: passed + these small shaping terms (ours)
TURN_FORMAT_WEIGHT = 0.1
TURN_VALIDITY_WEIGHT = 0.1


def _turn_format(turn, policy):
    """(well-formed steps, steps) of one turn."""
    steps = turn["steps"]
    good = [s["kind"] != "malformed" for s in steps]
    if policy == "awareness" and steps and turn["summary"] is None:
        good[0] = False  # the first step of a turn must open with the summary
    return sum(good), len(steps)


def _turn_calls(turn):
    """(calls executed, calls that returned an Error) in one turn."""
    return sum(s["n_calls"] for s in turn["steps"]), sum(s["n_errors"] for s in turn["steps"])


def _share(num, den, empty):
    return num / den if den > 0 else empty


def composite_reward(traj, weights=None):
    """The PAG-RL reward: sum over components of weight * component. Returns (total, components).

    Components (unweighted values, all of them, so the log can show each):
      format      well-formed steps / steps (0.0 if the model produced no step at all)
      validity    1 - failed / attempted, where a turn whose ground truth has calls and which
                  makes none (declined) counts as one attempted call that failed: declining is
                  never better than a call that errors (the decline guard, see turn_rewards); with
                  nothing attempted, 1.0 (the ground truth has no call either)
      success     1.0 if the checker passed the task, else 0.0
      progress    passed turns / turns (over traj["turn_passed"])
      efficiency  -min(1, extra / max(1, total ground-truth calls)), extra = sum over turns of
                  max(0, calls made - ground-truth calls); in [-1, 0]
      awareness   needed facts found (substring) in the summary of the turn that needs them /
                  all needed facts; if none is needed, the share of turns that wrote a summary
                  (so that skipping the awareness does not pay); under the history policy it is
                  0.0 and is left out of the total whatever its weight
    weights: overrides for DEFAULT_WEIGHTS (missing keys keep the default, unknown keys raise).
    """
    unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise KeyError(f"unknown reward components: {sorted(unknown)}")
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    policy, turns = traj["policy"], traj["turns"]

    good = steps = calls = errors = extra = gt_total = found = needed = 0
    for turn in turns:
        g, s = _turn_format(turn, policy)
        c, e = _turn_calls(turn)
        extra += max(0, c - turn["gt_steps"])
        if c == 0 and turn["gt_steps"] > 0:
            c = e = 1  # declined a turn that needs calls: one failed attempt
        good, steps, calls, errors = good + g, steps + s, calls + c, errors + e
        gt_total += turn["gt_steps"]
        summary = turn["summary"] or ""
        found += sum(fact in summary for fact in turn["needed_facts"])
        needed += len(turn["needed_facts"])

    comps = {
        "format": _share(good, steps, 0.0),
        "validity": 1.0 - _share(errors, calls, 0.0),
        "success": float(bool(traj["passed"])),
        "progress": _share(sum(map(bool, traj["turn_passed"])), len(traj["turn_passed"]), 0.0),
        "efficiency": -min(1.0, extra / max(1, gt_total)),
        "awareness": (_share(found, needed, 0.0) if needed else
                      _share(sum(t["summary"] is not None for t in turns), len(turns), 0.0))
        if policy == "awareness" else 0.0,
    }
    counted = [k for k in comps if k != "awareness" or policy == "awareness"]
    total = sum(w[k] * comps[k] for k in counted)
    return total, comps


def turn_rewards(traj):
    """MT-GRPO's turn-level rewards: one float per turn of traj["turns"]. Returns (rewards, parts).

    r_t = passed_t + TURN_FORMAT_WEIGHT * format_t + TURN_VALIDITY_WEIGHT * validity_t
    with passed_t = 1.0 if the checker passed turn t (0.0 if the verdict is missing), format_t and
    validity_t as in composite_reward but over turn t alone (format_t = 0.0 for a turn with no step,
    validity_t = 1.0 for a turn with no call only if its ground truth has none either, else 0.0).
    parts holds the three per-turn lists.

    The decline guard: a turn that should call and makes no call (an empty turn, or "no function
    can do this") scores at most TURN_FORMAT_WEIGHT, the score of a call list that fails; a correct
    call scores 1 + both weights. With validity 1.0 for every call-free turn, declining beat any
    wrong call, and a policy that rarely succeeds learnt to decline every request (measured: MT-GRPO
    ended 195 of 200 test tasks in an empty turn).
    """
    policy, verdicts = traj["policy"], traj["turn_passed"]
    parts = {"passed": [], "format": [], "validity": []}
    for t, turn in enumerate(traj["turns"]):
        calls, errors = _turn_calls(turn)
        parts["passed"].append(float(bool(verdicts[t])) if t < len(verdicts) else 0.0)
        parts["format"].append(_share(*_turn_format(turn, policy), 0.0))
        parts["validity"].append(1.0 - _share(errors, calls, 0.0) if calls else float(turn["gt_steps"] == 0))
    rewards = [p + TURN_FORMAT_WEIGHT * f + TURN_VALIDITY_WEIGHT * v
               for p, f, v in zip(parts["passed"], parts["format"], parts["validity"])]
    return rewards, parts


def outcome_reward(traj):
    """MT-GRPO's outcome reward: 1.0 if the whole task passed, else 0.0. Returns (r, parts)."""
    r = float(bool(traj["passed"]))
    return r, {"success": r}


# ----------------------------------------------------------------------------
# group advantages


def _standardise(values, eps):
    """(v - mean) / (std + eps) with the population std; exactly 0 when all values are equal.

    Population std (ddof=0) because the group is the whole population being compared, not a sample
    of a larger one; it is also defined for a group of one, and with two outcomes it gives the
    round +-1 advantages of a balanced group. The all-equal test is exact (max == min) because the
    float mean of equal values need not equal them bit for bit.
    """
    v = torch.as_tensor(values, dtype=torch.float64)
    if len(v) == 0 or bool(v.max() == v.min()):
        return torch.zeros_like(v)
    return (v - v.mean()) / (v.std(unbiased=False) + eps)


def _groups(group_ids):
    """group id -> list of rollout indices, in first-seen order. Ids may be any hashable."""
    if torch.is_tensor(group_ids):
        group_ids = group_ids.tolist()
    groups = {}
    for i, g in enumerate(group_ids):
        groups.setdefault(g, []).append(i)
    return groups


def grpo_advantages(rewards, group_ids, eps=1e-6):
    """GRPO: advantage_i = (r_i - mean of its group) / (population std of its group + eps).

    rewards: (N,) sequence or tensor; group_ids: N hashables (the task each rollout came from).
    A group whose rewards are all equal gets exactly 0. Returns a float32 tensor (N,).
    """
    r = torch.as_tensor(rewards, dtype=torch.float64).flatten()
    adv = torch.zeros_like(r)
    for idx in _groups(group_ids).values():
        adv[idx] = _standardise(r[idx], eps)
    return adv.float()


def mt_grpo_advantages(turn_rewards, outcome_rewards, group_ids, lam=1.0, eps=1e-6):
    """MT-GRPO: advantage of turn t of rollout i = A_turn[i][t] + lam * A_outcome[i].

    A_turn[i][t]: turn_rewards[i][t] standardised (as in grpo_advantages) across the rollouts of
    i's group that reached turn t (rollouts may have different numbers of turns).
    A_outcome[i]: grpo_advantages(outcome_rewards, group_ids)[i].
    Returns a list of N float32 tensors, entry i of shape (len(turn_rewards[i]),).
    """
    outcome_adv = grpo_advantages(outcome_rewards, group_ids, eps).double()
    out = [torch.zeros(len(tr), dtype=torch.float64) for tr in turn_rewards]
    for idx in _groups(group_ids).values():
        n_turns = max((len(turn_rewards[i]) for i in idx), default=0)
        for t in range(n_turns):
            have = [i for i in idx if t < len(turn_rewards[i])]
            adv_t = _standardise([turn_rewards[i][t] for i in have], eps)
            for i, a in zip(have, adv_t):
                out[i][t] = a
    return [(a + lam * outcome_adv[i]).float() for i, a in enumerate(out)]


def zero_advantage_share(rewards, group_ids):
    """Share of groups whose rewards are all equal: they teach nothing (advantage 0) -- log it."""
    r = torch.as_tensor(rewards, dtype=torch.float64).flatten()
    groups = list(_groups(group_ids).values())
    flat = sum(bool(r[idx].max() == r[idx].min()) for idx in groups)
    return flat / max(1, len(groups))


def expand_advantages(advantages, turn_of_token):
    """Spread advantages over tokens. Returns (N, T) float32 for policy_loss.

    advantages: a (N,) tensor (one per rollout, GRPO) or a list of N per-turn tensors (MT-GRPO).
    turn_of_token: (N, T) long, the user-turn index of each token, -1 where none (padding,
    prompt); those tokens get 0 (their mask is 0 anyway).
    """
    turn_of_token = torch.as_tensor(turn_of_token, dtype=torch.long)
    n, seq_len = turn_of_token.shape
    if torch.is_tensor(advantages):  # one number per rollout: every token gets it
        adv = advantages.float().view(n, 1).expand(n, seq_len)
        return torch.where(turn_of_token >= 0, adv, torch.zeros_like(adv))
    width = max(1, max(len(a) for a in advantages))
    table = torch.zeros(n, width)  # (N, max turns), padded with 0
    for i, a in enumerate(advantages):
        table[i, :len(a)] = torch.as_tensor(a, dtype=torch.float32)
    adv = table.gather(1, turn_of_token.clamp(0, width - 1))  # (N, T)
    return torch.where(turn_of_token >= 0, adv, torch.zeros_like(adv))


# ----------------------------------------------------------------------------
# losses


def token_logprobs(logits, tokens):
    """log p(tokens[b, t]) under logits[b, t]: (B, T, V), (B, T) -> (B, T) float32.

    The caller aligns them (logits at position t predict token t+1 of the input). Computed as
    gathered logit - logsumexp, which never materialises the (B, T, V) log-softmax output.
    """
    logits = logits.float()
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)


def policy_loss(logp_new, logp_old, advantages, mask, clip=0.2, logp_ref=None, kl_coef=0.0,
                num_tokens=None):
    """PPO clipped surrogate + optional k3 KL to a reference, normalised at token level.

    All inputs (B, T): log-probs of the sampled tokens under the current policy (with grad), the
    rollout policy and the reference; per-token advantages; mask 1 where the model sampled.
      ratio = exp(logp_new - logp_old)
      pg    = -min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A)
      kl    = exp(ref - new) - (ref - new) - 1       (k3: unbiased, always >= 0)
      loss  = sum over mask-1 tokens of (pg + kl_coef * kl) / num_tokens
    Token-level normalisation (as in DAPO): every sampled token of the batch weighs the same, so a
    long rollout is not diluted by averaging within its sequence first. num_tokens defaults to
    mask.sum(); pass the count over the whole batch when it is split into micro-batches.
    Mask-0 positions are replaced by 0 before any exp, so they get exactly zero gradient even if
    they hold garbage. At the first inner step logp_new == logp_old and the ratio is exactly 1.
    Returns (loss, stats) with stats floats: pg_loss, kl, clip_frac, ratio_mean, ratio_max,
    n_tokens.
    """
    m = mask.bool()
    zero = torch.zeros((), dtype=logp_new.dtype, device=logp_new.device)
    n_tok = m.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=m.device)
    n_tok = n_tok.clamp(min=1).to(logp_new.dtype)
    adv = torch.where(m, advantages.detach().to(logp_new.dtype), zero)

    log_ratio = torch.where(m, logp_new - logp_old.detach(), zero)  # 0 on mask-0: ratio 1
    ratio = torch.exp(log_ratio)
    surr = ratio * adv
    surr_clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv
    pg = -torch.minimum(surr, surr_clipped)  # (B, T), 0 where mask is 0
    pg_loss = pg.sum() / n_tok
    loss = pg_loss

    kl_loss = zero
    if logp_ref is not None:
        d = torch.where(m, logp_ref.detach() - logp_new, zero)
        kl_loss = (torch.exp(d) - d - 1.0).sum() / n_tok
        loss = loss + kl_coef * kl_loss

    with torch.no_grad():
        n_real = m.sum().clamp(min=1)
        clipped = (surr_clipped < surr) & m  # the clip is active: this token gets no gradient
        stats = {
            "pg_loss": pg_loss.item(),
            "kl": kl_loss.item(),
            "clip_frac": (clipped.sum() / n_real).item(),
            "ratio_mean": (torch.where(m, ratio, zero).sum() / n_real).item(),
            "ratio_max": torch.where(m, ratio, zero).max().item() if m.any() else 1.0,
            "n_tokens": int(m.sum()),
        }
    return loss, stats
