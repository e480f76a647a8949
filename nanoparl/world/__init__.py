"""The simulated world: BFCL-style tools, the user requests ("intents") written for them, and the
task generator. Not needed to follow the learning algorithm: a first read can skip this folder.

    base.py                the tools' base class, error helpers, Domain, what intents share
    filesystem.py          GorillaFileSystem (its intents: filesystem_intents.py)
    math.py, messaging.py, tickets.py, trading.py, travel.py
                           one tool class each, with its entity pools, intents and Domain
    registry.py            CLASSES, FUNCTION_DOCS, READ_ONLY, DOMAINS: the world by class name
    tasks.py               the task generator: categories, splits, JSONL files
"""
