"""The simulated tools: small stateful API classes in the style of BFCL v3 multi-turn.

Conventions shared by every class (they are what env.py and the checker rely on):
- state is loaded from a config dict with `_load_scenario(config)`; the public attributes (no
  leading underscore) ARE the state that the checker compares; `_cwd`, `_id_state`... are private;
- every public method is a tool; its first docstring line is the description shown to the model;
- methods return small JSON-serialisable dicts; a domain error returns {"error": "..."};
- IDs handed out by calls are 4-digit numbers (ints or digit strings, BFCL's types): a tiny model
  has to copy them across turns, and the tokenizer splits digits into single tokens.
Method and argument names follow BFCL's classes; several long argument lists are shortened.
The base class and the service classes (tickets, trading, travel, messaging) live in
apis_services.py; this file holds the file system, math, and the registry.
"""

import copy
import inspect
import math

from nanoparl.apis_services import API, MessageAPI, TicketAPI, TradingBot, _err  # noqa: F401
from nanoparl.apis_travel import AIRPORTS, TravelAPI  # noqa: F401

# ----------------------------------------------------------------------------
# File system. State: `root`, nested dicts (dict = folder, str = file content).

# Size limits. Legal calls could otherwise grow the tree without bound: `cp` a folder next to
# itself, `mv` the copy into it, repeat, and the folder doubles with every pair of calls (a few
# steps reach gigabytes). The limits are far above any generated task (at most ~30 entries,
# ~1,600 characters, depth 4); a call that would cross one returns an error and changes nothing.
MAX_FS_ENTRIES = 2000     # files and folders in the whole tree
MAX_FS_CHARS = 200_000    # characters of file content in the whole tree
MAX_FS_DEPTH = 16         # folder levels below /workspace (a file in /workspace/a/b is at depth 3)


def _usage(node):
    """(entries, characters, depth) of a file (str) or folder (dict); a file has depth 1."""
    if isinstance(node, str):
        return 1, len(node), 1
    entries, chars, depth = 1, 0, 1
    for child in node.values():
        e, c, d = _usage(child)
        entries, chars, depth = entries + e, chars + c, max(depth, 1 + d)
    return entries, chars, depth


class GorillaFileSystem(API):
    """An in-memory file system rooted at /workspace, with size limits (MAX_FS_*)."""

    _defaults = {"root": {}}
    _read_only = ("pwd", "ls", "cat", "grep", "wc", "sort", "tail")

    def _load_scenario(self, config):
        super()._load_scenario(config)
        self._cwd = []  # private, as in BFCL: where you stand is not compared, what you change is
        error = self._over_limit(depth=_usage(self.root)[2] - 1)
        if error:
            raise ValueError(f"GorillaFileSystem: initial tree too big: {error['error']}")

    def _over_limit(self, entries=0, chars=0, depth=0):
        """An error if the tree grown by `entries` and `chars`, with something new reaching `depth`
        levels below /workspace, would cross a limit; None if the change fits."""
        total_entries, total_chars, _ = _usage(self.root)  # counts the root itself as one entry
        if total_entries - 1 + entries > MAX_FS_ENTRIES:
            return _err(f"file system full: more than {MAX_FS_ENTRIES} files and folders")
        if total_chars + chars > MAX_FS_CHARS:
            return _err(f"file system full: more than {MAX_FS_CHARS} characters of content")
        if depth > MAX_FS_DEPTH:
            return _err(f"folders nested deeper than {MAX_FS_DEPTH} levels")
        return None

    def _dir(self):
        node = self.root
        for part in self._cwd:
            node = node[part]
        return node

    def _path(self):
        return "/workspace" + "".join("/" + p for p in self._cwd)

    def _bad_name(self, name):
        if not name or "/" in name or name in (".", "..") or len(name) > 64:
            return _err(f"invalid name: {name!r}")
        return None

    def _read(self, file_name):
        """(content, None) or (None, error dict)."""
        node = self._dir().get(file_name)
        if node is None:
            return None, _err(f"no such file: {file_name}")
        if not isinstance(node, str):
            return None, _err(f"{file_name} is a directory")
        return node, None

    def pwd(self):
        """Show the current directory."""
        return {"current_working_directory": self._path()}

    def ls(self, a: bool = False):
        """List the current directory (a=True also lists hidden files)."""
        names = sorted(n for n in self._dir() if a or not n.startswith("."))
        return {"current_directory_content": names}

    def cd(self, folder: str):
        """Change the current directory ('..' goes up one level)."""
        path = list(self._cwd)
        for part in folder.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not path:
                    return _err("already at /workspace")
                path.pop()
                continue
            node = self.root
            for p in path:
                node = node[p]
            if not isinstance(node.get(part), dict):
                return _err(f"no such directory: {part}")
            path.append(part)
        self._cwd = path
        return {"current_working_directory": self._path()}

    def mkdir(self, dir_name: str):
        """Create a directory in the current directory."""
        bad = self._bad_name(dir_name)
        if bad:
            return bad
        if dir_name in self._dir():
            return _err(f"{dir_name} already exists")
        full = self._over_limit(entries=1, depth=len(self._cwd) + 1)
        if full:
            return full
        self._dir()[dir_name] = {}
        return {}

    def touch(self, file_name: str):
        """Create an empty file in the current directory."""
        bad = self._bad_name(file_name)
        if bad:
            return bad
        if file_name in self._dir():
            return _err(f"{file_name} already exists")
        full = self._over_limit(entries=1, depth=len(self._cwd) + 1)
        if full:
            return full
        self._dir()[file_name] = ""
        return {}

    def echo(self, content: str, file_name: str = None):
        """Write content into a file (replacing it), or print it when no file is given."""
        if file_name is None:
            return {"terminal_output": content}
        bad = self._bad_name(file_name)
        if bad:
            return bad
        old = self._dir().get(file_name)
        if isinstance(old, dict):
            return _err(f"{file_name} is a directory")
        full = self._over_limit(entries=int(old is None), chars=len(content) - len(old or ""),
                                depth=len(self._cwd) + 1)
        if full:
            return full
        self._dir()[file_name] = content
        return {}

    def cat(self, file_name: str):
        """Show the content of a file."""
        content, error = self._read(file_name)
        return error or {"file_content": content}

    def mv(self, source: str, destination: str):
        """Move a file or folder into a folder, or rename it."""
        return self._move(source, destination, keep_source=False)

    def cp(self, source: str, destination: str):
        """Copy a file or folder into a folder, or to a new name."""
        return self._move(source, destination, keep_source=True)

    def _move(self, source, destination, keep_source):
        here = self._dir()
        if source not in here:
            return _err(f"no such file or directory: {source}")
        bad = self._bad_name(destination)
        if bad:
            return bad
        target, name, level = here, destination, len(self._cwd)
        if isinstance(here.get(destination), dict):  # into an existing folder, same name
            target, name, level = here[destination], source, level + 1
        if name in target or destination == source:
            return _err(f"{destination} already exists")
        # a copy adds entries and content; a move only changes how deep its subtree sits
        entries, chars, depth = _usage(here[source])
        full = (self._over_limit(entries, chars, level + depth) if keep_source
                else self._over_limit(depth=level + depth))
        if full:
            return full
        target[name] = copy.deepcopy(here[source]) if keep_source else here.pop(source)
        return {}

    def rm(self, file_name: str):
        """Remove a file or folder."""
        if file_name not in self._dir():
            return _err(f"no such file or directory: {file_name}")
        del self._dir()[file_name]
        return {}

    def grep(self, file_name: str, pattern: str):
        """Lines of a file that contain the pattern."""
        content, error = self._read(file_name)
        return error or {"matching_lines": [ln for ln in content.split("\n") if pattern in ln]}

    def wc(self, file_name: str, mode: str = "l"):
        """Count lines ('l'), words ('w') or characters ('c') of a file."""
        content, error = self._read(file_name)
        if error:
            return error
        if mode == "l":
            return {"count": len(content.split("\n")) if content else 0, "type": "lines"}
        if mode == "w":
            return {"count": len(content.split()), "type": "words"}
        if mode == "c":
            return {"count": len(content), "type": "characters"}
        return _err(f"invalid mode: {mode!r} (use 'l', 'w' or 'c')")

    def sort(self, file_name: str):
        """The lines of a file, sorted."""
        content, error = self._read(file_name)
        return error or {"sorted_content": "\n".join(sorted(content.split("\n")))}

    def tail(self, file_name: str, lines: int = 10):
        """The last lines of a file."""
        content, error = self._read(file_name)
        if error:
            return error
        if lines < 1:
            return _err("lines must be at least 1")
        return {"last_lines": "\n".join(content.split("\n")[-lines:])}


# ----------------------------------------------------------------------------
# Math: stateless, so every call is read-only.

def _numbers(values):
    if not isinstance(values, list) or not values:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return values


def _finite(x):
    """The result dict, or an error when the number overflowed: Infinity and NaN are not JSON."""
    if not math.isfinite(x):
        return _err("result is not a finite number")
    return {"result": round(x, 4)}


class MathAPI(API):
    """Arithmetic helpers. Results are rounded to 4 decimals to keep outputs short; a result too
    large for a float (multiply(a=1e308, b=10)) is an error, not Infinity."""

    _read_only = ("add", "subtract", "multiply", "divide", "mean", "max_value")

    def add(self, a: float, b: float):
        """Add two numbers: a + b."""
        return _finite(a + b)

    def subtract(self, a: float, b: float):
        """Subtract b from a: a - b."""
        return _finite(a - b)

    def multiply(self, a: float, b: float):
        """Multiply two numbers: a * b."""
        return _finite(a * b)

    def divide(self, a: float, b: float):
        """Divide a by b: a / b."""
        if b == 0:
            return _err("division by zero")
        return _finite(a / b)

    def mean(self, numbers: list):
        """Average of a list of numbers."""
        numbers = _numbers(numbers)
        if numbers is None:
            return _err("numbers must be a non-empty list of numbers")
        return _finite(sum(numbers) / len(numbers))

    def max_value(self, numbers: list):
        """Largest of a list of numbers."""
        numbers = _numbers(numbers)
        if numbers is None:
            return _err("numbers must be a non-empty list of numbers")
        return {"result": max(numbers)}


# ----------------------------------------------------------------------------
# Registry and the function list shown to the model

CLASSES = {cls.__name__: cls for cls in
           (GorillaFileSystem, TicketAPI, TradingBot, TravelAPI, MessageAPI, MathAPI)}


def public_methods(cls):
    """Names of the tools of a class, in definition order."""
    return [name for name, fn in vars(cls).items() if inspect.isfunction(fn) and not name.startswith("_")]


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
