"""The conversation format shared by SFT data, rollouts and eval: the system prompt with its function
listing, user and tool messages, and the awareness prefix <summary>..</summary><plan>..</plan>.
tokenizer.render turns these messages into ids and a loss mask; pag.py writes what goes in them.
"""

import json
import os
import re

from nanoparl.files import read_text
from nanoparl.world.registry import FUNCTION_DOCS, function_names

SYSTEM_HEADER = ("You call functions to do what the user asks. Write a call list like "
                 "[f(a=1)] to call, or plain text to answer. Functions:")


def available_functions(task, k):
    """Function names available at user turn k (held-out ones appear at their turn)."""
    later = {f for t, names in task.get("missed_function", {}).items() if int(t) > k for f in names}
    names = function_names(task["involved_classes"], exclude=later)
    order = task.get("aug", {}).get("order")
    if order:  # a perturbed function list keeps its own order
        names = sorted(names, key=order.index)
    return names


# How the system prompt lists each available function (the `listing` argument below). data_gen.py
# saves it as format.json, {"functions": listing}; train_sft.py copies that into checkpoints as
# meta["format"]; data_listing() reads the first, listing_of() the second:
#   "descriptions"  signature and a one-line description (the gpu preset);
#   "signatures"    the bare signature, e.g. get_ticket(ticket_id);
#   "names"         the name only (the cpu preset): a 1M-parameter model learns the argument names
#                   from the data anyway, and a short constant prompt lets its copy circuits form
#                   sooner (README, "Teaching a tiny model to copy").
FUNCTION_LISTINGS = ("names", "signatures", "descriptions")


def listing_of(fmt, ckpt="a checkpoint"):
    """A checkpoint's meta["format"] -> its listing. None (an older checkpoint) means "descriptions";
    formats from before the `functions` key said {"descriptions": true|false}. Another listing is a
    ValueError naming ckpt, before any rollout would fail on it."""
    fmt = fmt or {}
    if not isinstance(fmt, dict):
        raise ValueError(f"{ckpt}: its format is {fmt!r}, not an object such as {{\"functions\": \"names\"}}")
    listing = fmt.get("functions") or ("descriptions" if fmt.get("descriptions", True) else "signatures")
    if listing not in FUNCTION_LISTINGS:
        raise ValueError(f"{ckpt}: its format lists functions as {listing!r}; "
                         f"expected one of {list(FUNCTION_LISTINGS)}")
    return listing


def data_listing(data_dir):
    """The listing a data folder was written with: its format.json, {"functions": <a listing>},
    required (without it a run would train on one system prompt and record another)."""
    path = os.path.join(data_dir, "format.json")
    if not os.path.exists(path):
        raise ValueError(f"no {path}: it says how the data lists functions (data_gen.py writes it)")
    try:
        listing = json.loads(read_text(path)).get("functions")
    except (ValueError, AttributeError) as e:  # AttributeError: JSON, but not an object
        raise ValueError(f"{path}: not a JSON object ({e})") from None
    if listing not in FUNCTION_LISTINGS:
        raise ValueError(f"{path}: \"functions\" is {listing!r}; expected one of {list(FUNCTION_LISTINGS)}")
    return listing


def signature_line(task, name, listing="descriptions"):
    if listing not in FUNCTION_LISTINGS:
        raise ValueError(f"format 'functions' is {listing!r}; expected one of {FUNCTION_LISTINGS}")
    if listing == "names":
        return name
    if listing == "signatures":
        return FUNCTION_DOCS[name][0]
    description = task.get("aug", {}).get("descriptions", {}).get(name, FUNCTION_DOCS[name][1])
    return f"{FUNCTION_DOCS[name][0]} - {description}"


def system_message(task, k=0, listing="descriptions"):
    lines = [SYSTEM_HEADER] + [signature_line(task, n, listing) for n in available_functions(task, k)]
    return {"role": "system", "content": "\n".join(lines)}


def user_message(task, k, listing="descriptions"):
    """The user's text of turn k; a turn that adds functions also shows their signatures."""
    text = "\n".join(m["content"] for m in task["question"][k] if m["role"] == "user")
    added = task.get("missed_function", {}).get(str(k), [])
    if added:
        text += "\nNew functions:\n" + "\n".join(signature_line(task, n, listing) for n in added)
    return {"role": "user", "content": text}


def awareness_text(summary, plan):
    return f"<summary>{summary}</summary><plan>{plan}</plan>"


AWARENESS_RE = re.compile(r"^\s*<summary>(.*?)</summary>\s*<plan>(.*?)</plan>(.*)$", re.S)


def split_awareness(text):
    """Assistant text -> (summary, plan, rest); summary and plan are None when absent."""
    m = AWARENESS_RE.match(text)
    if not m:
        return None, None, text
    return m.group(1), m.group(2), m.group(3)


def tool_message(results):
    return {"role": "tool", "content": "\n".join(results)}
