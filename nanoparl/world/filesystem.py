"""The file system tool (BFCL's GorillaFileSystem): an in-memory tree under /workspace with cd, ls,
cat, echo, mv, cp, grep... The user requests for it are written by filesystem_intents.py (a file of
its own: tool and intents together would pass 400 lines). Conventions: base.py.

State: `root`, nested dicts (dict = folder, str = file content).
"""

import copy

from nanoparl.world.base import API, err

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
            return err(f"file system full: more than {MAX_FS_ENTRIES} files and folders")
        if total_chars + chars > MAX_FS_CHARS:
            return err(f"file system full: more than {MAX_FS_CHARS} characters of content")
        if depth > MAX_FS_DEPTH:
            return err(f"folders nested deeper than {MAX_FS_DEPTH} levels")
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
            return err(f"invalid name: {name!r}")
        return None

    def _read(self, file_name):
        """(content, None) or (None, error dict)."""
        node = self._dir().get(file_name)
        if node is None:
            return None, err(f"no such file: {file_name}")
        if not isinstance(node, str):
            return None, err(f"{file_name} is a directory")
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
                    return err("already at /workspace")
                path.pop()
                continue
            node = self.root
            for p in path:
                node = node[p]
            if not isinstance(node.get(part), dict):
                return err(f"no such directory: {part}")
            path.append(part)
        self._cwd = path
        return {"current_working_directory": self._path()}

    def mkdir(self, dir_name: str):
        """Create a directory in the current directory."""
        bad = self._bad_name(dir_name)
        if bad:
            return bad
        if dir_name in self._dir():
            return err(f"{dir_name} already exists")
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
            return err(f"{file_name} already exists")
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
            return err(f"{file_name} is a directory")
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
            return err(f"no such file or directory: {source}")
        bad = self._bad_name(destination)
        if bad:
            return bad
        target, name, level = here, destination, len(self._cwd)
        if isinstance(here.get(destination), dict):  # into an existing folder, same name
            target, name, level = here[destination], source, level + 1
        if name in target or destination == source:
            return err(f"{destination} already exists")
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
            return err(f"no such file or directory: {file_name}")
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
        return err(f"invalid mode: {mode!r} (use 'l', 'w' or 'c')")

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
            return err("lines must be at least 1")
        return {"last_lines": "\n".join(content.split("\n")[-lines:])}
