"""Every file the project writes goes through here, so that none is ever half-written: the data
(tasks, SFT samples, format.json, the tokenizer), results, logs that are rewritten, checkpoints.

The bytes go to a temp file next to the target, are flushed to disk, and the temp file is renamed
over the target (os.replace is atomic within a folder). A full disk, Ctrl-C or a crash on the way
removes the temp file and leaves the previous file whole; an OSError says which file it was."""

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """open(path, mode) for writing, atomically (above). An OSError is raised again as
    OSError("cannot write <path>: <reason>")."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:  # as read_text reads
            yield f
            f.flush()
            os.fsync(f.fileno())  # the bytes are durable before the rename makes them visible
        os.replace(tmp, path)
    except BaseException as e:  # also KeyboardInterrupt: never leave a half-written temp file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise OSError(f"cannot write {path}: {e.strerror or e}") from e
        raise


def write_file(path, data):
    """Write str or bytes to path atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def write_jsonl(path, rows):
    """One JSON object per line, atomically."""
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def keep_lines(path, n):
    """Cut a text file back to its first n lines, atomically."""
    write_file(path, "".join(read_text(path).splitlines(keepends=True)[:n]))


def read_text(path):
    """The text of a UTF-8 file; random bytes are a ValueError that names the file (Python's own
    UnicodeDecodeError names only the codec and a byte offset)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
