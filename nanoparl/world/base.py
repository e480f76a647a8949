"""What every domain of the simulated world shares: the tools' base class and error helpers, and
the Domain that ties a tool class to the intents that write user requests for it.

The tools are small stateful API classes in the style of BFCL v3 multi-turn. Conventions shared by
every class (they are what env.py and the checker rely on):
- state is loaded from a config dict with `_load_scenario(config)`; the public attributes (no
  leading underscore) ARE the state that the checker compares; `_cwd`, `_id_state`... are private;
- every public method is a tool; its first docstring line is the description shown to the model;
- methods return small JSON-serialisable dicts; a domain error returns {"error": "..."};
- IDs handed out by calls are 4-digit numbers (ints or digit strings, BFCL's types): a tiny model
  has to copy them across turns, and the tokenizer splits digits into single tokens.
Method and argument names follow BFCL's classes; several long argument lists are shortened.

An intent is a function of the task context `c` (world/tasks.py: Ctx). It first looks at the
current state and returns None if it does not fit (nothing executed yet); otherwise it runs its
calls with `c.do(...)` and returns the user message, or (message, vague message, follow-up that
supplies the missing value) when it can be used for miss_param. `c.say` picks a phrasing and
`c.pick` an entity allowed in the current split. Template lists hold >= 3 phrasings: every 3rd is
test-only; entity pools: every 4th value only appears in test.
"""

import copy
from collections import namedtuple

# ----------------------------------------------------------------------------
# Limits and errors

# Limits on state that legal calls can grow: a model looping on create_ticket or send_message must
# not grow the state (and the checker's copies of it) without bound. Generated tasks stay far below
# (at most ~20 tickets, orders, messages...; trading.py caps amounts the same way).
MAX_ITEMS = 500         # tickets, orders, messages, contacts, credit cards, bookings


def err(message):
    return {"error": message}


def too_many(items, what):
    """An error when a growing list or dict already holds MAX_ITEMS entries, else None."""
    return err(f"too many {what} (at most {MAX_ITEMS})") if len(items) >= MAX_ITEMS else None


def login_required(flag, what):
    return None if flag else err(f"not logged in to {what}")


# ----------------------------------------------------------------------------
# Base class

class API:
    """Base class: `_defaults` names the public state and its default values."""

    _defaults = {}
    _read_only = ()  # tools that never change the state (used by tests and rewards)

    def __init__(self):
        self._load_scenario({})

    def _load_scenario(self, config):
        config = dict(config or {})
        # id_seed is private: it fixes which IDs are handed out, so that the model's copy of the
        # world and the ground truth's copy hand out the same IDs for the same calls.
        self._id_state = int(config.pop("id_seed", 0))
        unknown = set(config) - set(self._defaults)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown config keys {sorted(unknown)}")
        for key, default in self._defaults.items():
            setattr(self, key, copy.deepcopy(config.get(key, default)))

    def _state(self):
        return copy.deepcopy({k: v for k, v in vars(self).items() if not k.startswith("_")})

    def _new_id(self, taken):
        """Next 4-digit ID, not in `taken`. A full-period LCG mod 9000: looks random, so the model
        must copy IDs rather than guess them, yet is deterministic given id_seed."""
        for _ in range(9000):
            self._id_state = (self._id_state * 7201 + 4231) % 9000
            if 1000 + self._id_state not in taken:
                return 1000 + self._id_state
        raise RuntimeError("out of IDs")


# ----------------------------------------------------------------------------
# What intents share

# config(c) -> initial state dict; intents: all intents;
# listing: those whose output grows with the state
Domain = namedtuple("Domain", "config intents listing")

# Entity pools used by more than one domain (split like every pool: every 4th value is test-only)
PEOPLE = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
          "Karl", "Liam", "Mona", "Nina", "Oscar", "Peggy", "Quinn", "Rita", "Sam", "Tina"]
USERNAMES = ["jsmith", "akim", "mlopez", "tchen", "rpatel", "lgarcia", "dnguyen", "ebrown",
             "kjones", "swilson", "pmartin", "hlee"]
PASSWORDS = ["sunflower", "bluebird", "maple42", "orbit77", "granite", "coral9", "lantern",
             "meadow5", "falcon", "harbor3", "pebble", "willow8"]


def pick_target(c, key, candidates):
    """(id, refers_to_earlier_turn): the ID remembered under `key` if still valid, else any
    candidate. This is where cross-turn references live: "close the ticket I just opened", "cancel
    the order I just placed", "insure that booking with the same card" need an ID returned turns
    earlier."""
    if c.mem.get(key) in candidates and c.chance(0.7):
        return c.mem[key], True
    return (c.rng.choice(candidates), False) if candidates else (None, False)


def distinct_ids(c, n):
    """n different 4-digit IDs for the initial state."""
    ids = []
    while len(ids) < n:
        i = c.rng.randint(1000, 9999)
        if i not in ids:
            ids.append(i)
    return ids

