"""The multi-turn agent loop: the task's user turns <-> model (through the engine) <-> ToolEnv.

One Rollout is one attempt at one task; a batch holds tasks x samples rollouts, one engine row each
(the samples of a task form a GRPO group and share their first prompt through Engine.fork).

A user turn goes: the user message is appended (forced, mask 0), then the model takes steps. A step
is one generation up to <|end|>:
- a call list "[f(a=1), ...]" is parsed (never evaluated) and executed in the rollout's ToolEnv; the
  results come back as a tool message (forced) and the turn goes on;
- plain text ends the turn.
At most MAX_STEPS steps per turn (BFCL's limit): the 21st ends the task as force_terminated. A row
whose context no longer fits the cache ends the task as context_overflow. Neither raises.

Context policies:
- history: one engine row grows through the whole conversation;
- awareness: at each new user turn the row is reset and rebuilt as system + previous turn (with the
  awareness the model wrote there) + this user message; the model writes <summary> and <plan> first.

OracleLoop replays the ground truth through this same loop (its texts are forced instead of
sampled): it must pass every task, which tests the loop, the format and the checker together.
"""

import time
from dataclasses import dataclass, field

import torch

from nanoparl.chat import awareness_text, split_awareness, system_message, tool_message, user_message
from nanoparl.engine import Engine
from nanoparl.env import MAX_STEPS, ParseError, ToolEnv, check, parse_calls
from nanoparl.pag import oracle_turns, summary_requirements


@dataclass
class Rollout:
    task: dict
    group: int                                         # index of the task in the batch
    env: ToolEnv = None
    turn: int = 0
    step: int = 0                                      # steps taken in the current turn
    done: bool = False
    error: str = None                                  # force_terminated | context_overflow
    model_turns: list = field(default_factory=list)    # per turn: executed call texts (for check)
    turns: list = field(default_factory=list)          # per turn: {"steps", "summary", "messages"}
    segments: list = field(default_factory=list)       # finished sequences (awareness: one per turn)
    turn_ids: list = field(default_factory=list)       # per token of the current row: its turn
    context_tokens: list = field(default_factory=list)  # row length before each step
    generated: int = 0                                 # sampled tokens
    verdict: dict = None


def classify(text):
    """An assistant step's text -> (summary, kind, calls_text); kind: calls | text | malformed."""
    summary, plan, rest = split_awareness(text)
    body = rest.strip()
    if body.startswith("["):
        try:
            parse_calls(body)
            return summary, "calls", body
        except ParseError:
            return summary, "malformed", body
    if not body or "<summary>" in body or "<plan>" in body:
        return summary, "malformed", body
    return summary, "text", body


class AgentLoop:
    """Runs rollouts for a batch of tasks with one engine. See the module docstring."""

    def __init__(self, model, tok, policy, listing="descriptions", max_len=None, step_tokens=256,
                 temperature=1.0, top_k=None, top_p=None, seed=0):
        if policy not in ("history", "awareness"):
            raise ValueError(f"unknown policy {policy!r}")
        self.model, self.tok, self.policy, self.listing = model, tok, policy, listing
        self.max_len = max_len or model.config.block_size
        self.step_tokens, self.temperature, self.top_k, self.top_p = step_tokens, temperature, top_k, top_p
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.env_seconds = 0.0  # time spent in the environment and the checker (for RL's log line)

    # ---- building contexts

    def _turn_start_tokens(self, r):
        """Tokens to append when rollout r begins its current user turn (row reset if awareness)."""
        task, k = r.task, r.turn
        if self.policy == "history" and k > 0:
            ids, _ = self.tok.render_message(user_message(task, k, self.listing))
            return ids + [self.tok.role_ids["assistant"]]
        messages = [system_message(task, 0 if self.policy == "history" else k, self.listing)]
        if k > 0:  # awareness: the previous turn, as the model wrote it, is the only history
            messages += [user_message(task, k - 1, self.listing)] + r.turns[k - 1]["messages"]
        messages.append(user_message(task, k, self.listing))
        return self.tok.render(messages, add_generation_prompt=True)[0]

    def _open_turn(self, r):
        """Bookkeeping at the start of user turn r.turn: functions it adds, empty records."""
        r.env.add_functions(r.task.get("missed_function", {}).get(str(r.turn), []))
        r.model_turns.append([])
        r.turns.append({"steps": [], "summary": None, "messages": []})
        r.step = 0

    def _begin_turn(self, r, row, engine, appends):
        self._open_turn(r)
        if self.policy == "awareness" and r.turn > 0:
            self._close_segment(r, row, engine)
            engine.reset([row])
        tokens = self._turn_start_tokens(r)
        r.turn_ids += [r.turn] * len(tokens)
        appends.append((row, tokens))

    def _close_segment(self, r, row, engine):
        tokens = engine.tokens(row)
        # an append that did not fit (the task then ends) left turn ids without tokens: drop them
        r.segments.append({"tokens": tokens, "mask": engine.mask(row),
                           "logprobs": engine.logprobs(row), "turn_ids": r.turn_ids[:len(tokens)]})
        r.turn_ids = []

    # ---- one step's outcome

    def _after_step(self, r, row, text, engine, appends):
        summary, kind, body = classify(text)
        turn = r.turns[r.turn]
        if not turn["steps"]:
            turn["summary"] = summary
        n_calls = n_errors = 0
        turn["messages"].append({"role": "assistant", "content": text, "train": False})
        if kind == "calls" or (kind == "malformed" and body.startswith("[")):
            if r.step == MAX_STEPS:  # a 21st call step in one turn: BFCL force-terminates the task
                r.done, r.error = True, "force_terminated"
                return
            before_calls, before_errors = r.env.n_calls, r.env.n_errors
            t0 = time.perf_counter()
            results = r.env.execute(body)
            self.env_seconds += time.perf_counter() - t0
            n_calls, n_errors = r.env.n_calls - before_calls, r.env.n_errors - before_errors
            r.model_turns[r.turn].append(body)
            turn["steps"].append({"text": text, "kind": kind, "n_calls": n_calls, "n_errors": n_errors})
            turn["messages"].append(tool_message(results))
            r.step += 1
            ids, _ = self.tok.render_message(tool_message(results))
            ids.append(self.tok.role_ids["assistant"])
            r.turn_ids += [r.turn] * len(ids)
            appends.append((row, ids))
            return
        turn["steps"].append({"text": text, "kind": kind, "n_calls": 0, "n_errors": 0})
        r.turn += 1  # plain text (or a malformed reply) ends the turn
        if r.turn == len(r.task["question"]):
            r.done = True
        else:
            self._begin_turn(r, row, engine, appends)

    # ---- the loop

    @torch.no_grad()
    def run(self, tasks, samples=1):
        """tasks x samples rollouts -> list of Rollout (group-major: task i's samples are adjacent)."""
        n = len(tasks) * samples
        engine = Engine(self.model, n, self.max_len)
        rollouts = [Rollout(task=t, group=i, env=ToolEnv.for_task(t)) for i, t in enumerate(tasks)
                    for _ in range(samples)]
        # turn 0: one prompt per group, prefilled once and forked to the group's other rows
        appends = []
        for r in rollouts:
            self._open_turn(r)
        for g in range(len(tasks)):
            tokens = self._turn_start_tokens(rollouts[g * samples])
            for r in rollouts[g * samples:(g + 1) * samples]:
                r.turn_ids = [0] * len(tokens)
            appends.append((g * samples, tokens))
        self._flush(engine, rollouts, appends)
        for g in range(len(tasks)):
            group = rollouts[g * samples:(g + 1) * samples]
            if group[0].done:  # the prompt alone does not fit: every sample of the task overflows
                for r in group:
                    r.done, r.error = True, "context_overflow"
            else:
                engine.fork(g * samples, range(g * samples, (g + 1) * samples))

        while True:
            live = [i for i, r in enumerate(rollouts) if not r.done]
            if not live:
                break
            for i in live:
                rollouts[i].context_tokens.append(engine.length(i))
            texts, reasons = self._step(engine, rollouts, live)
            # a step that ran out of budget never ended: close it now, so the row stays well-formed
            # (before _after_step, which may reset the row for the next turn)
            unfinished = [(i, [self.tok.end_id]) for i, reason in zip(live, reasons) if reason == "budget"]
            for i, _ in unfinished:
                rollouts[i].turn_ids.append(rollouts[i].turn)
            self._flush(engine, rollouts, unfinished)
            appends = []
            for i, text, reason in zip(live, texts, reasons):
                r = rollouts[i]
                if reason == "cache_full" or r.done:
                    r.done, r.error = True, r.error or "context_overflow"
                    continue
                self._after_step(r, i, text, engine, appends)
            self._flush(engine, rollouts, appends)

        for i, r in enumerate(rollouts):
            self._close_segment(r, i, engine)
            t0 = time.perf_counter()
            r.verdict = check(r.task, r.model_turns)
            self.env_seconds += time.perf_counter() - t0
            if r.error:
                r.verdict = dict(r.verdict, passed=False, error_type=r.error)
        return rollouts

    def _step(self, engine, rollouts, live):
        """One assistant step of every live row, sampled up to <|end|> -> (texts, stop reasons)."""
        outs, reasons = engine.generate(live, self.step_tokens, [self.tok.end_id], self.temperature,
                                        self.top_k, self.top_p, self.generator)
        texts = []
        for i, out, reason in zip(live, outs, reasons):
            rollouts[i].generated += len(out)
            rollouts[i].turn_ids += [rollouts[i].turn] * len(out)
            texts.append(self.tok.decode(out[:-1] if reason == "stop" else out))
        return texts, reasons

    def _flush(self, engine, rollouts, appends):
        """Append queued forced tokens, merging several queued for one row; overflow ends a task."""
        merged = {}
        for row, tokens in appends:
            merged.setdefault(row, []).extend(tokens)
        if not merged:
            return
        rows = list(merged)
        fits = engine.append(rows, [merged[r] for r in rows])
        for row, ok in zip(rows, fits):
            if not ok:
                rollouts[row].done, rollouts[row].error = True, "context_overflow"


class OracleLoop(AgentLoop):
    """The ground truth replayed through AgentLoop: each step's text is the PAG oracle's
    (pag.oracle_turns: the awareness, then the ground-truth calls one step at a time, then the
    reply), forced into the row instead of sampled. The model only carries the KV cache."""

    def run(self, tasks, samples=1):
        self.oracle = [oracle_turns(t) for t in tasks]
        return super().run(tasks, samples)

    def _step(self, engine, rollouts, live):
        texts, appends = [], []
        for i in live:
            r = rollouts[i]
            turn = self.oracle[r.group][r.turn]
            text = turn["steps"][len(r.turns[r.turn]["steps"])][0]
            if self.policy == "awareness" and not r.turns[r.turn]["steps"]:
                text = awareness_text(turn["summary"], turn["plan"]) + text
            tokens = self.tok.encode(text, allow_special=True) + [self.tok.end_id]
            r.generated += len(tokens)
            r.turn_ids += [r.turn] * len(tokens)
            texts.append(text)
            appends.append((i, tokens))
        self._flush(engine, rollouts, appends)
        return texts, ["stop" if not rollouts[i].done else "cache_full" for i in live]


# ----------------------------------------------------------------------------
# Summaries for rewards and metrics

def trajectory_summary(r, policy, required=None):
    """The plain-dict view of a rollout that rl.py's reward functions take. required: the task's
    summary_requirements, when the caller has them (once per task, not per sample)."""
    required = required if required is not None else summary_requirements(r.task)
    turns = []
    for k, gt in enumerate(r.task["ground_truth"]):
        t = r.turns[k] if k < len(r.turns) else {"steps": [], "summary": None}
        turns.append({"steps": [{key: s[key] for key in ("text", "kind", "n_calls", "n_errors")} for s in t["steps"]],
                      "summary": t["summary"], "gt_steps": len(gt), "needed_facts": required[k]})
    return {"policy": policy, "passed": r.verdict["passed"], "turn_passed": r.verdict["turns"],
            "error_type": r.verdict["error_type"], "turns": turns}


def trajectory_summaries(rollouts, policy):
    """trajectory_summary of every rollout, working out each task's summary_requirements once: the
    samples of a task share its dict (train_rl scores groups of G, eval.py --samples k)."""
    required = {}
    for r in rollouts:
        if id(r.task) not in required:
            required[id(r.task)] = summary_requirements(r.task)
    return [trajectory_summary(r, policy, required[id(r.task)]) for r in rollouts]


def transcript(r, name=None, max_chars=None):
    """Rollout r as text: a header with the verdict (and the row name, when several models print
    theirs), then per user turn the user's words, the messages, and the ground truth. max_chars
    shortens long messages. eval.py --show prints it; train_rl.py writes it to episodes_<step>.txt."""
    verdict = "PASS" if r.verdict["passed"] else "FAIL " + str(r.verdict["error_type"])
    lines = [f"=== {name + ' | ' if name else ''}{r.task['id']} ({r.task['category']}) -> {verdict}"]
    for k, turn in enumerate(r.turns):
        lines.append(f"[user] {r.task['question'][k][0]['content']}")
        for m in turn["messages"]:
            text = m["content"]
            if max_chars and len(text) >= max_chars:
                text = text[:max_chars] + "..."
            lines.append(f"[{m['role']}] {text}")
        lines.append(f"  (ground truth: {r.task['ground_truth'][k]})")
    return "\n".join(lines)
