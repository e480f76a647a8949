"""Procedural multi-turn function-calling tasks (BFCL v3 multi-turn format), with splits.

A task is one JSON object per line:
    {"id": "train_base_17", "category": "base", "split": "train",
     "involved_classes": ["TravelAPI", "MathAPI"],
     "initial_config": {"TravelAPI": {"authenticated": true, ...}, "MathAPI": {}},
     "question": [[{"role": "user", "content": "Book me ..."}], ...],      # one list per turn
     "ground_truth": [["book_flight(card_id='4821', ...)"], [], ...],      # one list per turn
     "missed_function": {"2": ["purchase_insurance"]}}                     # turn -> added functions

How a task is made: pick the classes and build their initial state; then, turn by turn, pick an
intent (each domain's file in this folder: filesystem_intents.py, tickets.py, travel.py...) that
fits the current state, let it write the user message and run its calls in a live ToolEnv, so that
later turns can refer to what earlier calls returned ("cancel the order I just placed" needs the
order_id). The category then reshapes one turn:
    miss_param    the turn leaves out a required value (ground truth []: ask), the next supplies it;
    miss_func     a needed function is held back (ground truth []: say it cannot be done), the
                  next turn says it was added and holds the calls;
    long_context  distractor state (many files, tickets...) makes tool outputs long.
A task is kept only if its ground truth replays without any error.

Splits (split_pool, split_phrasings): val is drawn like train (fresh seeds). The two held-out
splits both hold out every 4th entity of each pool (cities, file names, people, companies...), so
a model must copy values it never saw, and differ in their words:
    test    (the headline, in-domain like the paper's BFCL test) every user message is a phrasing
            train uses, said in a frame ("Hi. ... Thanks.") train uses, but never that phrasing in
            that frame: a combination train never saw whole, made of parts it saw;
    unseen  every 3rd phrasing of each template list, which no other split uses: words train never
            saw. What pretraining brings; a model trained from scratch is not expected to pass it.
No test or unseen user message appears in train (generate_splits makes it a guarantee).
"""

import json
import random
import re
from collections import Counter

from nanoparl.env import ToolEnv, format_call, parse_ground_truth
from nanoparl.files import read_text, write_jsonl
from nanoparl.world.registry import DOMAINS, FUNCTION_CLASS, READ_ONLY

CATEGORIES = ("base", "miss_param", "miss_func", "long_context")
SPLITS = ("train", "val", "test", "unseen")
HELD_OUT = ("test", "unseen")  # the splits whose entity values train never sees
# classes: the API classes tasks draw from; max_turns: turns per task (1..);
# long_output_chars: cap on the total tool output of a long_context task (2700 chars ~ 900 tokens)
DEFAULT_SETTINGS = dict(classes=list(DOMAINS), max_turns=6, categories=list(CATEGORIES),
                        long_output_chars=2700)

ADDED_TEMPLATES = (
    "The function {fn} is available now. Please go ahead.",
    "I have added {fn} for you, so you can do it now.",
    "{fn} has been enabled. Try again, please.",
    "You now have access to {fn}. Please continue.",
    "Good news: {fn} works now, go ahead with my request.",
    "OK, {fn} is installed now. Please finish the job.",
)


class Reject(Exception):
    """This attempt cannot be completed; the generator retries with a fresh random stream."""


# ----------------------------------------------------------------------------
# Splits of pools and templates

# Every phrasing is said in a frame: an optional greeting before it, an optional thanks after it.
FRAMES = tuple((before, after) for before in ("", "Hi. ", "Hello! ", "Next: ")
               for after in ("", " Thanks.", " Thank you!"))


def split_pool(pool, split):
    """Every 4th value is held out for test and unseen; train and val share the rest."""
    return [v for i, v in enumerate(pool) if (i % 4 == 3) == (split in HELD_OUT)]


def split_templates(templates, split):
    """Every 3rd phrasing is held out for unseen; the other splits share the rest."""
    assert len(templates) >= 3, f"need at least 3 phrasings: {templates}"
    return [t for i, t in enumerate(templates) if (i % 3 == 2) == (split == "unseen")]


def split_phrasings(templates, split):
    """(phrasing, frame) pairs a split says a request with. Phrasing i in frame j belongs to test
    when (i + j) % 4 == 0, to train and val otherwise: every phrasing and every frame is seen in
    train, and test's pairs never are. unseen says its own phrasings in any frame."""
    pairs = [(i, t, j, f) for i, t in enumerate(templates) if t in split_templates(templates, split)
             for j, f in enumerate(FRAMES)]
    if split == "unseen":
        return [(t, f) for i, t, j, f in pairs]
    return [(t, f) for i, t, j, f in pairs if ((i + j) % 4 == 0) == (split == "test")]


# ----------------------------------------------------------------------------
# The context an intent works with

class Ctx:
    """What an intent sees: the random stream, the split, the live environment and a memory of what
    earlier turns created (keys chosen by the intents, e.g. 'order_id')."""

    def __init__(self, rng, split, long_context):
        self.rng, self.split, self.long = rng, split, long_context
        self.env, self.mem, self.calls = None, {}, []

    def chance(self, p):
        return self.rng.random() < p

    def pick(self, pool):
        return self.rng.choice(split_pool(pool, self.split))

    def pool(self, pool):
        return split_pool(pool, self.split)

    def sample(self, pool, k):
        values = split_pool(pool, self.split)
        return self.rng.sample(values, min(k, len(values)))

    def say(self, templates, **fields):
        phrasing, (before, after) = self.rng.choice(split_phrasings(templates, self.split))
        return before + phrasing.format(**fields) + after

    def api(self, class_name):
        return self.env.instances[class_name]

    def do(self, function, /, **kwargs):
        """Run one call of the plan now; its result feeds later turns."""
        ok, value = self.env.run(function, kwargs)
        if not ok:
            raise Reject(f"{function}: {value}")
        self.calls.append(format_call(function, kwargs))
        return value


# ----------------------------------------------------------------------------
# Building one task

def _run_turn(c, class_names, listing_only):
    """One user turn: (text, vague, supply, calls). Maybe two intents joined into one turn."""
    parts, used = [], None
    for _ in range(2 if c.chance(0.3) and not listing_only else 1):
        # "that number" always means a number the intent just before produced (a price, a cost...)
        c.mem["prev_number"] = c.mem.pop("number", None)
        class_name = c.rng.choice([n for n in class_names
                                   if DOMAINS[n].listing or not listing_only])
        domain = DOMAINS[class_name]
        intents = list(domain.listing if listing_only else domain.intents)
        c.rng.shuffle(intents)
        for intent in intents:
            if intent is used:  # "do X. do X again." makes a silly turn
                continue
            out = intent(c)  # None: does not fit the current state; nothing was executed
            if out is not None:
                parts.append(out if isinstance(out, tuple) else (out, None, None))
                used = intent
                break
        if not parts:
            raise Reject(f"no intent fits {class_name}")
    calls, c.calls = c.calls, []
    if not 1 <= len(calls) <= 4:
        raise Reject("a turn needs 1 to 4 calls")
    if len(parts) == 1:
        return parts[0] + (calls,)
    return " ".join(p[0] for p in parts), None, None, calls


def _attempt(rng, settings, split, category):
    c = Ctx(rng, split, category == "long_context")
    classes = list(settings["classes"])
    if category == "long_context":  # at least one class whose listings can grow long
        classes = [n for n in classes if DOMAINS[n].listing] or classes
    names = rng.sample(classes, 2 if len(classes) > 1 and rng.random() < 0.4 else 1)
    if (len(names) == 2 and rng.random() < 0.5 and "MathAPI" in settings["classes"]
            and "MathAPI" not in names):
        names[1] = "MathAPI"  # math pairs well: "how much would 3 of those cost?"
    names = sorted(set(names), key=list(DOMAINS).index)
    config = {n: DOMAINS[n].config(c) for n in names}
    c.env = ToolEnv(names, config)
    extra = 1 if category in ("miss_param", "miss_func") else 0
    n_turns = rng.randint(1, max(1, settings["max_turns"] - extra))
    long_lists = category == "long_context" and any(DOMAINS[n].listing for n in names)
    listing_turn = rng.randrange(n_turns) if long_lists else -1  # one turn surely shows the crowd
    turns = [_run_turn(c, names, t == listing_turn) for t in range(n_turns)]
    question = [t[0] for t in turns]
    truth = [t[3] for t in turns]
    missed = {}
    if category == "miss_param":
        choices = [k for k, t in enumerate(turns) if t[1] is not None]
        if not choices:
            raise Reject("no turn can omit a value")
        k = rng.choice(choices)
        question[k:k + 1] = [turns[k][1], turns[k][2]]
        truth[k:k + 1] = [[], truth[k]]
    elif category == "miss_func":
        # hold back the FIRST function of a turn, never used before: then nothing of that turn can
        # be done, and "no call, say it cannot be done" is the one right answer
        used_before, choices = set(), []
        for k, calls in enumerate(truth):
            fn = calls[0].split("(")[0]
            if fn not in used_before:
                choices.append((k, fn))
            used_before |= {call.split("(")[0] for call in calls}
        if not choices:
            raise Reject("no function to hold back")
        k, fn = rng.choice(choices)
        question[k + 1:k + 1] = [c.say(ADDED_TEMPLATES, fn=fn)]
        truth[k:k + 1] = [[], truth[k]]
        missed = {str(k + 1): [fn]}
    return {"id": "", "category": category, "split": split, "involved_classes": names,
            "initial_config": config,
            "question": [[{"role": "user", "content": text}] for text in question],
            "ground_truth": truth, "missed_function": missed}


def replay(task):
    """Execute the ground truth: one list of result strings per turn."""
    env = ToolEnv.for_task(task)
    results = []
    for k, calls in enumerate(task["ground_truth"]):
        env.add_functions(task["missed_function"].get(str(k), []))
        results.append([r for call in calls for r in env.execute(call)])
    return results


def make_task(settings, split, index, seed):
    """Task number `index` of a split: deterministic in (settings, split, index, seed)."""
    settings = {**DEFAULT_SETTINGS, **settings}
    categories = settings["categories"]
    category = categories[index % len(categories)]
    for attempt in range(200):
        rng = random.Random(f"{seed}/{split}/{index}/{attempt}")
        try:
            task = _attempt(rng, settings, split, category)
        except Reject:
            continue
        outputs = [r for turn in replay(task) for r in turn]
        if any(r.startswith("Error") for r in outputs):
            continue
        if category == "long_context" and sum(map(len, outputs)) > settings["long_output_chars"]:
            continue
        task["id"] = f"{split}_{category}_{index}"
        return task
    raise RuntimeError(f"could not make task {split}/{index} ({category}) in 200 attempts")


# ----------------------------------------------------------------------------
# Splits and statistics

def user_messages(task):
    return {m["content"] for turn in task["question"] for m in turn}


def words(text):
    """The words of a text: its runs of letters (numbers are values, never words)."""
    return set(re.findall(r"[A-Za-z]+", text))


def new_words(text, task, known):
    """Words of a user message of task outside `known`, the task's own values aside (any word of
    its ground truth or initial state: a held-out city, name or title)."""
    values = words(" ".join(c for turn in task["ground_truth"] for c in turn)
                   + json.dumps(task["initial_config"]))
    return words(text) - known - values


def generate_splits(settings, seed, sizes):
    """sizes: {"train": n, "val": n, "test": n, "unseen": n} -> {split: [task, ...]}. Test and
    unseen tasks that share any user message with train are skipped (by construction there are
    none; this makes it a guarantee)."""
    out, train_messages = {}, set()
    for split in SPLITS:
        tasks, index = [], 0
        while len(tasks) < sizes.get(split, 0):
            task = make_task(settings, split, index, seed)
            index += 1
            if split in HELD_OUT and user_messages(task) & train_messages:
                continue
            tasks.append(task)
        if split == "train":
            train_messages = set().union(*map(user_messages, tasks)) if tasks else set()
        out[split] = tasks
    return out


def task_stats(tasks):
    """Per category: tasks, turns/task, calls/task, tool output chars per task (mean, max)."""
    rows = {}
    for task in tasks:
        out_chars = sum(len(r) for turn in replay(task) for r in turn)
        row = rows.setdefault(task["category"], Counter())
        row["tasks"] += 1
        row["turns"] += len(task["question"])
        row["calls"] += sum(map(len, task["ground_truth"]))
        row["read_only"] += sum(c.split("(")[0] in READ_ONLY
                                for t in task["ground_truth"] for c in t)
        row["out_chars"] += out_chars
        row["max_out_chars"] = max(row["max_out_chars"], out_chars)
    return rows


def class_counts(tasks):
    return Counter(FUNCTION_CLASS.get(c.split("(")[0], "?") for t in tasks
                   for turn in t["ground_truth"] for c in turn)


# ----------------------------------------------------------------------------
# JSONL files

def save_tasks(path, tasks):
    write_jsonl(path, tasks)


MAX_DEPTH = 50  # lists and dicts in a task nest ~10 levels (a file-system tree); far deeper is no task


def too_deep(obj, limit=MAX_DEPTH):
    """Do lists and dicts nest more than limit levels in obj? Iterative: no RecursionError."""
    stack = [(obj, 0)]
    while stack:
        x, depth = stack.pop()
        if isinstance(x, (list, dict)):
            if depth == limit:
                return True
            stack += [(v, depth + 1) for v in (x.values() if isinstance(x, dict) else x)]
    return False


def task_problem(task):
    """What is wrong with the shape of one task (fields, types, nesting, missed functions), or None."""
    if not isinstance(task, dict):
        return "a task must be a JSON object"
    missing = [k for k in ("id", "category", "involved_classes", "initial_config", "question", "ground_truth")
               if k not in task]
    if missing:
        return f"task is missing {missing}"
    if too_deep(task):
        return f"task {task['id']!r} nests deeper than {MAX_DEPTH} levels"
    question, truth = task["question"], task["ground_truth"]
    missed = task.setdefault("missed_function", {})
    if not isinstance(task["id"], str) or task["category"] not in CATEGORIES:
        return f"id must be a string and category one of {list(CATEGORIES)}"
    if not (isinstance(task["involved_classes"], list) and all(isinstance(c, str) for c in task["involved_classes"])
            and isinstance(task["initial_config"], dict)
            and all(isinstance(v, dict) for v in task["initial_config"].values())):
        return "involved_classes must be a list of class names and initial_config an object per class"
    if not (isinstance(question, list) and all(isinstance(t, list) for t in question) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for t in question for m in t)):
        return "question must be a list of turns, each a list of {role, content} messages"
    if not (isinstance(truth, list) and len(truth) == len(question)
            and all(isinstance(t, list) and all(isinstance(c, str) for c in t) for t in truth)):
        return "ground_truth must be one list of call strings per turn of question"
    if not (isinstance(missed, dict) and all(isinstance(v, list) for v in missed.values())
            and all(k.isdigit() and 0 < int(k) < len(question) for k in missed)):
        return "missed_function must map later turn numbers (\"1\", \"2\"...) to lists of function names"
    unknown = [f for names in missed.values() for f in names
               if not isinstance(f, str) or FUNCTION_CLASS.get(f) not in task["involved_classes"]]
    if unknown:
        return f"missed_function names {unknown}: no function of {task['involved_classes']}"
    return None


def load_tasks(path):
    """Read a JSONL task file; a bad line raises ValueError naming file:line and the task id
    (bad JSON or bytes, missing fields, wrong types, nesting deeper than MAX_DEPTH, an unknown class,
    config key or missed function, a ground-truth call that does not parse), so a broken file fails
    here and not deep inside a training run."""
    tasks = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise ValueError(f"{path}:{lineno}: nests deeper than Python's JSON reader can go") from None
        problem = task_problem(task)
        if problem:
            raise ValueError(f"{path}:{lineno}: {problem}")
        try:
            ToolEnv.for_task(task)  # known classes, config keys they accept
            parse_ground_truth(task)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
        except (TypeError, AttributeError) as e:  # a config value of the wrong type
            raise ValueError(f"{path}:{lineno}: task {task['id']!r}: a value of initial_config has the wrong "
                             f"type ({e})") from None
        tasks.append(task)
    return tasks
