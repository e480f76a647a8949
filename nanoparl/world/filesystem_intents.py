"""What users ask of the file system (the tool: filesystem.py): make folders and files, write,
read, move, copy, delete, search. Conventions of intents: base.py.
"""

from nanoparl.world.base import Domain

# ----------------------------------------------------------------------------
# Entity pools: every 4th value only appears in test

STEMS = ["notes", "report", "todo", "budget", "draft", "log", "ideas", "plan", "data", "summary",
         "readme", "letter", "agenda", "tasks", "invoice", "recipe", "poem", "journal", "schedule",
         "contacts", "minutes", "memo", "outline", "quotes"]
EXTS = [".txt", ".md", ".csv"]
DIRS = ["docs", "archive", "projects", "backup", "photos", "music", "reports", "temp", "drafts",
        "old", "work", "school", "research", "scripts", "assets", "travel"]
LINES = ["buy milk", "call the bank", "meeting at noon", "fix the login bug", "review the budget",
         "send the invoice", "book the venue", "update the slides", "water the plants",
         "pay the rent", "email the team", "renew the passport", "back up the laptop",
         "order new chairs", "plan the offsite", "clean the garage"]


# ----------------------------------------------------------------------------
# Intents

def _file_name(c):
    return c.pick(STEMS) + c.rng.choice(EXTS)


def _content(c, lines):
    return "\n".join(c.rng.sample(LINES, lines))


def files_config(c):
    root = {}
    for d in c.sample(DIRS, c.rng.randint(1, 3)):
        root[d] = {_file_name(c): _content(c, c.rng.randint(1, 3))
                   for _ in range(c.rng.randint(0, 2))}
    for _ in range(c.rng.randint(1, 3)):
        root[_file_name(c)] = _content(c, c.rng.randint(2, 4))
    if c.long:  # distractors: a crowded folder with longer files
        for _ in range(c.rng.randint(10, 16)):
            root[f"{c.pick(STEMS)}_{c.rng.randint(10, 99)}{c.rng.choice(EXTS)}"] = _content(c, 5)
    return {"root": root}


def _here(c):
    """(files, folders) of the current directory."""
    here = c.api("GorillaFileSystem")._dir()
    return ([n for n, v in here.items() if isinstance(v, str)],
            [n for n, v in here.items() if isinstance(v, dict)])


def _fresh(c, make):
    files, dirs = _here(c)
    for _ in range(10):
        name = make(c)
        if name not in files and name not in dirs:
            return name
    return None


def _a_file(c, with_content=False):
    """A file of the current folder, preferring the one created earlier in the task."""
    files, _ = _here(c)
    here = c.api("GorillaFileSystem")._dir()
    files = [f for f in files if here[f] or not with_content]
    if c.mem.get("file") in files and c.chance(0.6):
        return c.mem["file"], True
    return (c.rng.choice(files), False) if files else (None, False)


def files_make_folder(c):
    d = _fresh(c, lambda c: c.pick(DIRS))
    if d is None:
        return None
    c.do("mkdir", dir_name=d)
    c.mem["dir"] = d
    if c.chance(0.3):
        c.do("cd", folder=d)
        return c.say(["Create a folder called {d} and go into it.",
                      "Make a directory {d}, then move into it.",
                      "Set up a new folder {d} and switch to it."], d=d)
    return (c.say(["Create a folder called {d}.", "Make a new directory named {d}.",
                   "Please set up a folder named {d}."], d=d),
            c.say(["Create a new folder for me.", "I need a new directory here.",
                   "Please make a folder."]),
            c.say(["Call it {d}.", "Name it {d}.", "The name should be {d}."], d=d))


def files_enter_folder(c):
    _, dirs = _here(c)
    if not dirs:
        return None
    if c.mem.get("dir") in dirs and c.chance(0.6):
        c.do("cd", folder=c.mem["dir"])
        return c.say(["Go into the folder we just created.", "Now switch into that new folder.",
                      "Go back into the folder we created.", "Open the directory I made earlier."])
    d = c.rng.choice(dirs)
    c.do("cd", folder=d)
    if c.chance(0.4):
        c.do("ls")
        return c.say(["Go into {d} and show me what is inside.",
                      "Switch to the {d} folder and list it.",
                      "Open {d} and tell me what it contains."], d=d)
    return c.say(["Go into the {d} folder.", "Change directory to {d}.",
                  "Move into {d}, please."], d=d)


def files_go_up(c):
    if not c.api("GorillaFileSystem")._cwd:
        return None
    c.do("cd", folder="..")
    return c.say(["Go back up one level.", "Go to the parent folder.",
                  "Step out of this directory."])


def files_create_empty(c):
    f = _fresh(c, _file_name)
    if f is None:
        return None
    c.do("touch", file_name=f)
    c.mem["file"] = f
    return (c.say(["Create an empty file named {f}.", "Make a new file called {f}.",
                   "Touch a file {f} here."], f=f),
            c.say(["Create a new empty file here.", "I need a blank file in this folder.",
                   "Make an empty file for me."]),
            c.say(["Name it {f}.", "Call it {f}.", "It should be called {f}."], f=f))


def files_write_text(c):
    f, ref = _a_file(c)
    if f is None or c.chance(0.3):
        f, ref = _fresh(c, _file_name), False
        if f is None:
            return None
    text = c.pick(LINES)
    if c.api("GorillaFileSystem")._dir().get(f) == text:
        return None  # writing what is already there would change nothing
    c.do("echo", content=text, file_name=f)
    c.mem["file"] = f
    if ref:
        return c.say(["Write '{t}' into the file I just created.",
                      "Put the text '{t}' in that file.",
                      "Now write '{t}' into that same file."], t=text)
    return (c.say(["Write '{t}' into {f}.", "Save the text '{t}' to {f}.",
                   "Put '{t}' in the file {f}."], t=text, f=f),
            c.say(["Write something into {f} for me.", "Put a note into {f}.",
                   "Add some text to {f}."], f=f),
            c.say(["The text is '{t}'.", "Write '{t}'.", "Use the words '{t}'."], t=text))


def files_show_file(c):
    f, ref = _a_file(c)
    if f is None:
        return None
    c.do("cat", file_name=f)
    if ref:
        return c.say(["Show me what is in that file now.", "Print the file we worked on.",
                      "Display that file again."])
    return c.say(["Show me what is in {f}.", "Print the contents of {f}.",
                  "Display {f} for me."], f=f)


def files_list_folder(c):
    c.do("ls")
    return c.say(["What is in the current folder?", "List the files here.",
                  "Show me this directory's contents.", "Which files are in this folder?"])


def files_where_am_i(c):
    c.do("pwd")
    return c.say(["Which directory am I in?", "Where am I right now?", "Print the current path."])


def files_move_or_rename(c):
    f, ref = _a_file(c)
    _, dirs = _here(c)
    if f is None:
        return None
    if dirs and c.chance(0.5):
        d = c.mem["dir"] if c.mem.get("dir") in dirs else c.rng.choice(dirs)
        if f in c.api("GorillaFileSystem")._dir()[d]:
            return None
        c.do("mv", source=f, destination=d)
        return c.say(["Move {f} into the {d} folder.", "Put {f} inside {d}.",
                      "Relocate {f} to the {d} directory."], f=f, d=d)
    g = _fresh(c, _file_name)
    if g is None:
        return None
    c.do("mv", source=f, destination=g)
    c.mem["file"] = g
    return (c.say(["Rename {f} to {g}.", "Change the name of {f} to {g}.",
                   "Call {f} {g} from now on."], f=f, g=g),
            c.say(["Rename {f}.", "Give {f} a different name.",
                   "I want {f} to have a new name."], f=f),
            c.say(["The new name is {g}.", "Rename it to {g}.", "Make it {g}."], g=g))


def files_copy(c):
    f, _ = _a_file(c)
    g = _fresh(c, _file_name)
    if f is None or g is None:
        return None
    c.do("cp", source=f, destination=g)
    return c.say(["Make a copy of {f} named {g}.", "Copy {f} to {g}.",
                  "Duplicate {f} as {g}."], f=f, g=g)


def files_delete(c):
    f, ref = _a_file(c)
    if f is None:
        return None
    c.do("rm", file_name=f)
    c.mem.pop("file", None)
    if ref:
        return c.say(["Delete that file.", "Remove the file we just made.",
                      "Get rid of that file."])
    return c.say(["Delete {f}.", "Remove the file {f}.", "Please get rid of {f}."], f=f)


def files_inspect(c):
    f, _ = _a_file(c, with_content=True)
    if f is None:
        return None
    content = c.api("GorillaFileSystem")._dir()[f]
    kind = c.rng.randrange(4)
    if kind == 0:
        word = c.rng.choice(content.split())
        c.do("grep", file_name=f, pattern=word)
        return c.say(["Find the lines in {f} that mention '{w}'.", "Search {f} for '{w}'.",
                      "Which lines of {f} contain '{w}'?"], f=f, w=word)
    if kind == 1:
        mode = c.rng.choice(["l", "w"])
        c.do("wc", file_name=f, mode=mode)
        unit = "lines" if mode == "l" else "words"
        return c.say(["How many {u} are in {f}?", "Count the {u} of {f}.",
                      "Tell me the number of {u} in {f}."], f=f, u=unit)
    if kind == 2:
        c.do("sort", file_name=f)
        return c.say(["Sort the lines of {f}.", "Show {f} in sorted order.",
                      "Give me {f} sorted alphabetically."], f=f)
    n = c.rng.randint(1, 3)
    c.do("tail", file_name=f, lines=n)
    return c.say(["Show me the last {n} lines of {f}.", "What are the final {n} lines in {f}?",
                  "Tail {f}, {n} lines."], f=f, n=n)


FILES = Domain(files_config,
               [files_make_folder, files_enter_folder, files_go_up, files_create_empty,
                files_write_text, files_show_file, files_list_folder, files_where_am_i,
                files_move_or_rename, files_copy, files_delete, files_inspect],
               [files_list_folder])
