"""The registry of the simulated world: every tool class by name, the function list shown to the
model (signatures and descriptions), which tools are read-only, and each class's Domain (config and
intents) for the task generator.

The order of DOMAINS is data, not style: the task generator draws classes by their place in it, so
another order changes every generated file. CLASSES keeps the order it always had (FUNCTION_DOCS
and error messages follow it).
"""

import inspect

from nanoparl.world.filesystem import GorillaFileSystem
from nanoparl.world.filesystem_intents import FILES
from nanoparl.world.math import MATH, MathAPI
from nanoparl.world.messaging import MESSAGING, MessageAPI
from nanoparl.world.tickets import TICKETS, TicketAPI
from nanoparl.world.trading import TRADING, TradingBot
from nanoparl.world.travel import TRAVEL, TravelAPI

# class name -> the tool class
CLASSES = {cls.__name__: cls for cls in
           (GorillaFileSystem, TicketAPI, TradingBot, TravelAPI, MessageAPI, MathAPI)}
# class name -> Domain(config, intents, listing), in the order the task generator draws from
DOMAINS = {"GorillaFileSystem": FILES, "MessageAPI": MESSAGING, "MathAPI": MATH,
           "TicketAPI": TICKETS, "TradingBot": TRADING, "TravelAPI": TRAVEL}


# ----------------------------------------------------------------------------
# The function list shown to the model

def public_methods(cls):
    """Names of the tools of a class, in definition order."""
    return [name for name, fn in vars(cls).items()
            if inspect.isfunction(fn) and not name.startswith("_")]


def _signature(name, fn):
    params = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:  # skip self
        text = f"{p.name}: {p.annotation.__name__}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        params.append(text)
    return f"{name}({', '.join(params)})"


def _build_docs():
    docs, owner = {}, {}
    for class_name, cls in CLASSES.items():
        for name in public_methods(cls):
            fn = getattr(cls, name)
            assert name not in docs, f"function name {name} is used by two classes"
            docs[name] = (_signature(name, fn), inspect.getdoc(fn).split("\n")[0])
            owner[name] = class_name
    return docs, owner


# FUNCTION_DOCS: name -> (signature, description); augmentation may reword the description.
# FUNCTION_CLASS: name -> the class that owns it.
FUNCTION_DOCS, FUNCTION_CLASS = _build_docs()
READ_ONLY = {name for cls in CLASSES.values() for name in cls._read_only}


def function_names(class_names, exclude=()):
    return [n for c in class_names for n in public_methods(CLASSES[c]) if n not in exclude]
