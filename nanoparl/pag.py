"""PAG: Progress Awareness Generation (the chat format it writes into lives in chat.py).

The paper pairs every user turn of a multi-turn function-calling conversation with a *summary* of
what has happened so far and a *plan* for this turn, verifies that the awareness is sufficient,
diversifies the data, and fine-tunes on it. Here:

- the oracle (oracle_turns) replays a task's ground truth in ToolEnv and writes, per user turn, a
  templated summary (the facts earlier turns produced: IDs, results, logins) and plan (the calls
  of this turn in order, "ask for the missing value", or the function it needs marked "not available");
- the sufficiency check (check_sufficiency) is our exact form of the paper's verification: every
  value a ground-truth call takes from an earlier turn must be in every summary between the turn
  it came from and the turn that uses it (the awareness policy shows nothing older than that);
- augmentation (augment): paraphrased user turns, perturbed function lists (shuffled order,
  reworded descriptions) and random word masking; the ground truth stays valid;
- rendering (sft_samples) for the two context policies:
    history    one sample per task, the whole conversation;
    awareness  one sample per user turn: system + previous turn (its awareness included, mask 0)
               + this user message -> <summary>..</summary><plan>..</plan> then calls and reply.

Simplifications against the paper (also in the README): a rule-based oracle writes the awareness
instead of a generator LLM, and the awareness is written once per user turn, not before every call.
SFT conversations make one call per assistant step and end each turn with a short plain reply.
"""

import json
import random
import re

from nanoparl.chat import awareness_text, system_message, tool_message, user_message
from nanoparl.env import ToolEnv, parse_calls
from nanoparl.world.registry import FUNCTION_DOCS, function_names
from nanoparl.world.tasks import replay

DONE_REPLY = "Done."
CANNOT_REPLY = "None of the available functions can do that."
EMPTY_SUMMARY = "nothing yet"
PLAN_ASK = "ask for the missing value"
# a declined turn's plan names the step it cannot take: "1. get_ticket: not available". The model
# writes the function the request needs first, then checks that very name against the listing (a
# plan that opened with "no available function..." asked for the check before the name: r11)
PLAN_CANNOT = "not available"

# ----------------------------------------------------------------------------
# The oracle: replay the ground truth, write the awareness

DROP_KEYS = {"title", "description", "message", "resolution", "name", "invoice"}


def _scalar(v):
    return isinstance(v, (str, int, float)) and not isinstance(v, bool) and len(str(v)) <= 24


def call_facts(name, kwargs, result):
    """(key, value) facts worth remembering from one call: short scalar results, ids inside
    listed records, and the ID arguments of the call itself."""
    facts = []
    for key, value in kwargs.items():
        if key.endswith("_id") and _scalar(value):
            facts.append((key, str(value)))
    if isinstance(result, dict):
        for key, value in result.items():
            if key in DROP_KEYS:
                continue
            if _scalar(value):
                facts.append((key, str(value)))
            elif isinstance(value, list) and value and all(isinstance(x, dict) and "id" in x for x in value):
                facts.append((key, " ".join(str(x["id"]) for x in value)))
    return facts


def summarize(fact_log):
    """fact_log: [(function, [(key, value), ...]), ...] -> one short line, duplicates dropped."""
    seen, parts = set(), []
    for name, facts in fact_log:
        new = [f"{k}={v}" for k, v in facts if (k, v) not in seen]
        seen.update(facts)
        if new:
            parts.append(f"{name} " + " ".join(new))
    return "; ".join(parts) if parts else EMPTY_SUMMARY


def missing_param(task, k):
    """The name of the argument a miss_param turn k leaves out (supplied by turn k+1)."""
    if k + 1 >= len(task["ground_truth"]):
        return None
    asked, answer = user_message(task, k)["content"], user_message(task, k + 1)["content"]

    def said(v, text):  # as a whole word: CVV 336 is not said by card number 6733678466248496
        return re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text) is not None

    for call in task["ground_truth"][k + 1]:
        for name, kwargs in parse_calls(call):
            for key, value in kwargs.items():
                if any(said(v, answer) and not said(v, asked) for v in _values(value)):
                    return key
    return None


def oracle_turns(task):
    """Replay the ground truth -> per user turn {"summary", "plan", "steps"}; steps is a list of
    (assistant text, tool results or None) in order, the awareness not yet prefixed."""
    env = ToolEnv.for_task(task)
    fact_log, turns = [], []
    for k, calls in enumerate(task["ground_truth"]):
        env.add_functions(task.get("missed_function", {}).get(str(k), []))
        summary = summarize(fact_log)
        steps = []
        for call in calls:
            (name, kwargs), = parse_calls(call)
            result = env.call(name, kwargs)
            if result.startswith("Error"):
                raise ValueError(f"task {task['id']}: ground truth {call} fails: {result}")
            fact_log.append((name, call_facts(name, kwargs, json.loads(result))))
            steps.append((f"[{call}]", [result]))
        if calls:
            plan = " ".join(f"{i + 1}. {c.split('(')[0]}" for i, c in enumerate(calls))
            steps.append((DONE_REPLY, None))
        elif task["category"] == "miss_func" and str(k + 1) in task.get("missed_function", {}):
            plan = f"1. {task['missed_function'][str(k + 1)][0]}: {PLAN_CANNOT}"
            steps.append((CANNOT_REPLY, None))
        else:
            plan = PLAN_ASK
            param = missing_param(task, k)
            steps.append((f"Could you tell me the {param or 'missing value'}?", None))
        turns.append({"summary": summary, "plan": plan, "steps": steps})
    return turns


# ----------------------------------------------------------------------------
# Facts a turn needs from earlier turns, and the sufficiency check

def _values(v):
    if isinstance(v, list):
        return [x for item in v for x in _values(item)]
    if isinstance(v, dict):
        return [x for item in v.values() for x in _values(item)]
    if isinstance(v, bool) or v is None:
        return []
    return [str(v)]


def needed_facts(task, turns=None):
    """-> per turn t, [(value, origin turn)]: argument values of turn t's ground truth that come
    from an earlier turn and not from turn t itself. The origin is the latest earlier turn whose
    user message, tool results or calls show the value."""
    texts = []  # per turn: (user text, tool results, calls): where a value can be seen
    for k, turn in enumerate(turns or oracle_turns(task)):
        results = [r for _, res in turn["steps"] if res for r in res]
        texts.append((user_message(task, k)["content"], results, task["ground_truth"][k]))
    needed = []
    for t, calls in enumerate(task["ground_truth"]):
        here, seen_results, out = texts[t][0], [], []
        for call in calls:
            for _, kwargs in parse_calls(call):
                for value in _values(kwargs):
                    if len(value) < 3 or value in here or any(value in r for r in seen_results):
                        continue
                    origins = [j for j in range(t) if value in texts[j][0]
                               or any(value in r for r in texts[j][1] + texts[j][2])]
                    if origins and (value, origins[-1]) not in out:
                        out.append((value, origins[-1]))
            seen_results += [r for r in texts[t][1]]
        needed.append(out)
    return needed


def summary_requirements(task, turns=None):
    """-> per turn m, the values the summary written at turn m must hold: a value used at turn t
    that came from turn j must be in the summaries of turns j+1 .. t-1."""
    required = [[] for _ in task["ground_truth"]]
    for t, facts in enumerate(needed_facts(task, turns)):
        for value, j in facts:
            for m in range(j + 1, t):
                if value not in required[m]:
                    required[m].append(value)
    return required


def check_sufficiency(task, turns=None):
    """None if every summary holds what it must, else a reason string (counted by data_gen)."""
    turns = turns or oracle_turns(task)
    for m, values in enumerate(summary_requirements(task, turns)):
        missing = [v for v in values if v not in turns[m]["summary"]]
        if missing:
            return f"summary of turn {m} lacks {missing[0]!r}"
    return None


# ----------------------------------------------------------------------------
# Augmentation

PREFIXES = ["", "", "Please ", "Hi! ", "Quick one: ", "Hey, "]
SUFFIXES = ["", "", " Thanks.", " Thank you!", " Cheers."]
SYNONYMS = {"Show": "Display", "show": "display", "List": "Give me", "Please": "Kindly",
            "Create": "Open", "Cancel": "Call off", "Check": "Look up", "Set": "Change",
            "now": "right away", "Book": "Reserve", "book": "reserve"}
DESCRIPTION_PREFIXES = ["", "Use this to: ", "Tool. ", "Function that does this: "]


def _protected(word, gt_text):
    core = word.strip(".,!?:;'\"()")
    return not core or any(ch.isdigit() for ch in core) or "'" in word or core in gt_text


def paraphrase(text, rng, gt_text):
    words = [SYNONYMS.get(w, w) if not _protected(w, gt_text) else w for w in text.split(" ")]
    text = " ".join(words)
    prefix = rng.choice(PREFIXES)
    if prefix and text[:1].isupper() and not _protected(text.split(" ")[0], gt_text):
        text = text[0].lower() + text[1:]
    return prefix + text + rng.choice(SUFFIXES)


def mask_words(text, rng, p, gt_text):
    return " ".join("_" if rng.random() < p and not _protected(w, gt_text) else w for w in text.split(" "))


def fresh_value(value, rng):
    """A random string of the same shape: each letter -> a random letter of the same case, each
    digit -> a random digit, everything else kept ('Laptop battery' -> 'Qexnod wirtubj')."""
    def one(ch):
        if ch.isdigit():
            return rng.choice("0123456789")
        if ch.isalpha() and ch.isascii():
            letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
            return letter.upper() if ch.isupper() else letter
        return ch
    return "".join(one(ch) for ch in value)


def rename_entities(task, rng):
    """A copy of task in which the string values its ground-truth calls take from the user's words
    (usernames, secrets, ticket titles, ...) are replaced by fresh random strings of the same shape,
    everywhere: user text, initial state, ground truth. A value is renamed only if the renamed task still replays
    without an error (a city the travel API must know, a date, an enum like 'economy' stay).

    Why: the train split draws each kind of value from a small pool, so a small model can learn
    the values by heart instead of copying them, and fails on test's held-out values. Random
    values can only be copied: for strings this is what random IDs are for digits."""
    said = " ".join(m["content"] for turn in task["question"] for m in turn)
    values = set()
    for turn in task["ground_truth"]:
        for call in turn:
            for _, kwargs in parse_calls(call):
                # only what the user says verbatim: a value the call derives ('Open' from "still
                # open") keeps its meaning
                values |= {v for v in kwargs.values() if isinstance(v, str) and len(v) >= 3
                           and re.fullmatch(r"[A-Za-z][A-Za-z0-9 _-]*", v) and v in said}
    new = task
    for value in sorted(values):
        pattern = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_])")
        trial = json.loads(pattern.sub(fresh_value(value, rng), json.dumps(new)))
        try:
            ok = not any(r.startswith("Error") for turn in replay(trial) for r in turn)
        except Exception:  # a renamed value the API's own code depends on
            ok = False
        if ok:
            new = trial
    return new


def augment(task, seed, paraphrase_turns=True, perturb_functions=True, mask_p=0.0, rename=False):
    """A copy of task with reworded user turns and/or a perturbed function list and/or renamed
    entities (rename_entities); the ground truth stays valid."""
    rng = random.Random(f"{task['id']}/{seed}")
    if rename:
        task = rename_entities(task, rng)
    gt_text = " ".join(c for turn in task["ground_truth"] for c in turn)
    new = json.loads(json.dumps(task))
    new["id"] = f"{task['id']}_aug{seed}"
    for turn in new["question"]:
        for m in turn:
            if paraphrase_turns and rng.random() < 0.7:
                m["content"] = paraphrase(m["content"], rng, gt_text)
            if mask_p > 0:
                m["content"] = mask_words(m["content"], rng, mask_p, gt_text)
    if perturb_functions:
        names = function_names(task["involved_classes"])
        order = names[:]
        rng.shuffle(order)
        descriptions = {n: rng.choice(DESCRIPTION_PREFIXES) + FUNCTION_DOCS[n][1] for n in names}
        new["aug"] = {"order": order, "descriptions": descriptions}
    return new


# ----------------------------------------------------------------------------
# SFT samples for the two context policies

def turn_messages(task, k, turn, awareness, train=True):
    """The assistant and tool messages of one user turn (the awareness prefixed to the first)."""
    out = []
    for i, (text, results) in enumerate(turn["steps"]):
        if awareness and i == 0:
            text = awareness_text(turn["summary"], turn["plan"]) + text
        out.append({"role": "assistant", "content": text, "train": train})
        if results is not None:
            out.append(tool_message(results))
    return out


def sft_samples(task, policy, turns=None, listing="descriptions"):
    """-> list of message lists: one for `history`, one per user turn for `awareness`."""
    turns = turns or oracle_turns(task)
    if policy == "history":
        messages = [system_message(task, 0, listing)]
        for k, turn in enumerate(turns):
            messages += [user_message(task, k, listing)] + turn_messages(task, k, turn, awareness=False)
        return [messages]
    if policy != "awareness":
        raise ValueError(f"unknown policy {policy!r}")
    samples = []
    for k, turn in enumerate(turns):
        messages = [system_message(task, k, listing)]
        if k > 0:  # the previous turn, its awareness included, as untrained context
            messages += [user_message(task, k - 1, listing)]
            messages += turn_messages(task, k - 1, turns[k - 1], True, train=False)
        messages += [user_message(task, k, listing)] + turn_messages(task, k, turn, awareness=True)
        samples.append(messages)
    return samples
