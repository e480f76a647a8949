"""Intents for the file system, messaging and math tools (see tasks.py for how they are used).

An intent is a function of the task context `c` (tasks.Ctx). It first looks at the current state
and returns None if it does not fit (nothing executed yet); otherwise it runs its calls with
`c.do(...)` and returns the user message, or (message, vague message, follow-up that supplies the
missing value) when it can be used for miss_param. `c.say` picks a phrasing and `c.pick` an entity
allowed in the current split. Template lists hold >= 3 phrasings: every 3rd is test-only.
"""

from collections import namedtuple

# config(c) -> initial state dict; intents: all intents; listing: those whose output grows with the state
Domain = namedtuple("Domain", "config intents listing")

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
PEOPLE = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
          "Karl", "Liam", "Mona", "Nina", "Oscar", "Peggy", "Quinn", "Rita", "Sam", "Tina"]
MESSAGES = ["See you at noon", "The report is ready", "Running late today", "Lunch tomorrow",
            "Call me back please", "The meeting moved to Friday", "Thanks for the help",
            "Happy birthday", "The budget is approved", "Please review the draft",
            "Bring the charger", "The train is delayed"]


def _digits(c, taken=()):
    while True:
        value = str(c.rng.randint(1000, 9999))
        if value not in taken:
            return value


# ----------------------------------------------------------------------------
# File system

def _file_name(c):
    return c.pick(STEMS) + c.rng.choice(EXTS)


def _content(c, lines):
    return "\n".join(c.rng.sample(LINES, lines))


def fs_config(c):
    root = {}
    for d in c.sample(DIRS, c.rng.randint(1, 3)):
        root[d] = {_file_name(c): _content(c, c.rng.randint(1, 3)) for _ in range(c.rng.randint(0, 2))}
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


def fs_mkdir(c):
    d = _fresh(c, lambda c: c.pick(DIRS))
    if d is None:
        return None
    c.do("mkdir", dir_name=d)
    c.mem["dir"] = d
    if c.chance(0.3):
        c.do("cd", folder=d)
        return c.say(["Create a folder called {d} and go into it.", "Make a directory {d}, then move into it.",
                      "Set up a new folder {d} and switch to it."], d=d)
    return (c.say(["Create a folder called {d}.", "Make a new directory named {d}.", "Please set up a folder named {d}."], d=d),
            c.say(["Create a new folder for me.", "I need a new directory here.", "Please make a folder."]),
            c.say(["Call it {d}.", "Name it {d}.", "The name should be {d}."], d=d))


def fs_cd(c):
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
        return c.say(["Go into {d} and show me what is inside.", "Switch to the {d} folder and list it.",
                      "Open {d} and tell me what it contains."], d=d)
    return c.say(["Go into the {d} folder.", "Change directory to {d}.", "Move into {d}, please."], d=d)


def fs_up(c):
    if not c.api("GorillaFileSystem")._cwd:
        return None
    c.do("cd", folder="..")
    return c.say(["Go back up one level.", "Go to the parent folder.", "Step out of this directory."])


def fs_touch(c):
    f = _fresh(c, _file_name)
    if f is None:
        return None
    c.do("touch", file_name=f)
    c.mem["file"] = f
    return (c.say(["Create an empty file named {f}.", "Make a new file called {f}.", "Touch a file {f} here."], f=f),
            c.say(["Create a new empty file here.", "I need a blank file in this folder.", "Make an empty file for me."]),
            c.say(["Name it {f}.", "Call it {f}.", "It should be called {f}."], f=f))


def fs_echo(c):
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
        return c.say(["Write '{t}' into the file I just created.", "Put the text '{t}' in that file.",
                      "Now write '{t}' into that same file."], t=text)
    return (c.say(["Write '{t}' into {f}.", "Save the text '{t}' to {f}.", "Put '{t}' in the file {f}."], t=text, f=f),
            c.say(["Write something into {f} for me.", "Put a note into {f}.", "Add some text to {f}."], f=f),
            c.say(["The text is '{t}'.", "Write '{t}'.", "Use the words '{t}'."], t=text))


def fs_cat(c):
    f, ref = _a_file(c)
    if f is None:
        return None
    c.do("cat", file_name=f)
    if ref:
        return c.say(["Show me what is in that file now.", "Print the file we worked on.", "Display that file again."])
    return c.say(["Show me what is in {f}.", "Print the contents of {f}.", "Display {f} for me."], f=f)


def fs_ls(c):
    c.do("ls")
    return c.say(["What is in the current folder?", "List the files here.", "Show me this directory's contents.",
                  "Which files are in this folder?"])


def fs_pwd(c):
    c.do("pwd")
    return c.say(["Which directory am I in?", "Where am I right now?", "Print the current path."])


def fs_mv(c):
    f, ref = _a_file(c)
    _, dirs = _here(c)
    if f is None:
        return None
    if dirs and c.chance(0.5):
        d = c.mem["dir"] if c.mem.get("dir") in dirs else c.rng.choice(dirs)
        if f in c.api("GorillaFileSystem")._dir()[d]:
            return None
        c.do("mv", source=f, destination=d)
        return c.say(["Move {f} into the {d} folder.", "Put {f} inside {d}.", "Relocate {f} to the {d} directory."], f=f, d=d)
    g = _fresh(c, _file_name)
    if g is None:
        return None
    c.do("mv", source=f, destination=g)
    c.mem["file"] = g
    return (c.say(["Rename {f} to {g}.", "Change the name of {f} to {g}.", "Call {f} {g} from now on."], f=f, g=g),
            c.say(["Rename {f}.", "Give {f} a different name.", "I want {f} to have a new name."], f=f),
            c.say(["The new name is {g}.", "Rename it to {g}.", "Make it {g}."], g=g))


def fs_cp(c):
    f, _ = _a_file(c)
    g = _fresh(c, _file_name)
    if f is None or g is None:
        return None
    c.do("cp", source=f, destination=g)
    return c.say(["Make a copy of {f} named {g}.", "Copy {f} to {g}.", "Duplicate {f} as {g}."], f=f, g=g)


def fs_rm(c):
    f, ref = _a_file(c)
    if f is None:
        return None
    c.do("rm", file_name=f)
    c.mem.pop("file", None)
    if ref:
        return c.say(["Delete that file.", "Remove the file we just made.", "Get rid of that file."])
    return c.say(["Delete {f}.", "Remove the file {f}.", "Please get rid of {f}."], f=f)


def fs_read_tool(c):
    f, _ = _a_file(c, with_content=True)
    if f is None:
        return None
    content = c.api("GorillaFileSystem")._dir()[f]
    kind = c.rng.randrange(4)
    if kind == 0:
        word = c.rng.choice(content.split())
        c.do("grep", file_name=f, pattern=word)
        return c.say(["Find the lines in {f} that mention '{w}'.", "Search {f} for '{w}'.", "Which lines of {f} contain '{w}'?"], f=f, w=word)
    if kind == 1:
        mode = c.rng.choice(["l", "w"])
        c.do("wc", file_name=f, mode=mode)
        unit = "lines" if mode == "l" else "words"
        return c.say(["How many {u} are in {f}?", "Count the {u} of {f}.", "Tell me the number of {u} in {f}."], f=f, u=unit)
    if kind == 2:
        c.do("sort", file_name=f)
        return c.say(["Sort the lines of {f}.", "Show {f} in sorted order.", "Give me {f} sorted alphabetically."], f=f)
    n = c.rng.randint(1, 3)
    c.do("tail", file_name=f, lines=n)
    return c.say(["Show me the last {n} lines of {f}.", "What are the final {n} lines in {f}?", "Tail {f}, {n} lines."], f=f, n=n)


FILES = Domain(fs_config, [fs_mkdir, fs_cd, fs_up, fs_touch, fs_echo, fs_cat, fs_ls, fs_pwd, fs_mv,
                           fs_cp, fs_rm, fs_read_tool], [fs_ls])


# ----------------------------------------------------------------------------
# Messaging

def msg_config(c):
    people = c.sample(PEOPLE, c.rng.randint(3, 5))
    ids = {}
    for p in people:
        ids[p] = _digits(c, ids.values())
    me = people[0]
    c.mem["me"] = ids[me]
    others = people[1:]
    sent = [{"id": int(_digits(c)), "receiver_id": ids[c.rng.choice(others)], "message": c.pick(MESSAGES)}
            for _ in range(c.rng.randint(8, 12) if c.long else c.rng.randint(0, 2))]
    return {"user_map": ids, "current_user": ids[me] if c.chance(0.5) else None,
            "contacts": c.rng.sample(others, c.rng.randint(0, len(others))), "messages_sent": sent,
            "id_seed": c.rng.randrange(9000)}


def _msg_in(c):
    return c.api("MessageAPI").current_user is not None


def msg_login(c):
    if _msg_in(c):
        return None
    uid = c.mem["me"]
    c.do("message_login", user_id=uid)
    return (c.say(["Log me into the messaging app, my user id is {u}.", "Sign in to messages as user {u}.",
                   "Please log in to messaging with user id {u}."], u=uid),
            c.say(["Log me into the messaging app.", "Sign me in to messages.", "I want to use the messaging app."]),
            c.say(["My user id is {u}.", "Use user id {u}.", "The id is {u}."], u=uid))


def msg_lookup(c):
    people = [p for p, i in c.api("MessageAPI").user_map.items() if i != c.mem["me"]]
    p = c.rng.choice(people)
    c.mem["contact"] = (p, c.do("get_user_id", user=p)["user_id"])
    return c.say(["What is {p}'s user id?", "Look up the user id of {p}.", "Find the id for {p}."], p=p)


def msg_add(c):
    api = c.api("MessageAPI")
    candidates = [p for p in c.pool(PEOPLE) if p not in api.contacts and api.user_map.get(p) != c.mem["me"]]
    if not _msg_in(c) or not candidates:
        return None
    p = c.rng.choice(candidates)
    c.mem["contact"] = (p, c.do("add_contact", user_name=p)["user_id"])
    return c.say(["Add {p} to my contacts.", "Save {p} as a contact.", "Put {p} in my contact list."], p=p)


def msg_send(c):
    if not _msg_in(c):
        return None
    text = c.pick(MESSAGES)
    if "contact" in c.mem and c.chance(0.6):
        p, uid = c.mem["contact"]
        c.do("send_message", receiver_id=uid, message=text)
        return c.say(["Now send {p} the message '{m}'.", "Message {p}: '{m}'.",
                      "Send them this message: '{m}'."], p=p, m=text)
    people = [p for p, i in c.api("MessageAPI").user_map.items() if i != c.mem["me"]]
    p = c.rng.choice(people)
    uid = c.do("get_user_id", user=p)["user_id"]
    c.do("send_message", receiver_id=uid, message=text)
    c.mem["contact"] = (p, uid)
    return (c.say(["Send {p} the message '{m}'.", "Text {p}: '{m}'.", "Tell {p} '{m}' by message."], p=p, m=text),
            c.say(["Send {p} a message.", "I want to message {p}.", "Write to {p} for me."], p=p),
            c.say(["Say '{m}'.", "The message is '{m}'.", "Write '{m}'."], m=text))


def msg_view(c):
    if not _msg_in(c):
        return None
    c.do("view_messages_sent")
    return c.say(["Show me the messages I have sent.", "List my sent messages.", "What messages did I send?"])


def msg_search(c):
    sent = c.api("MessageAPI").messages_sent
    if not _msg_in(c) or not sent:
        return None
    word = c.rng.choice(c.rng.choice(sent)["message"].split())
    c.do("search_messages", keyword=word)
    return c.say(["Find my messages that mention '{w}'.", "Search my sent messages for '{w}'.",
                  "Which messages contain the word '{w}'?"], w=word)


MESSAGING = Domain(msg_config, [msg_login, msg_lookup, msg_add, msg_send, msg_view, msg_search], [msg_view])


# ----------------------------------------------------------------------------
# Math (stateless). Intents leave a number they produced in c.mem["number"]; the next
# intent sees it as c.mem["prev_number"] (tasks._run_turn), so "that number" is never ambiguous.

def math_config(c):
    return {}


def math_binary(c):
    ops = {"add": ["What is {a} plus {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}."],
           "subtract": ["What is {a} minus {b}?", "Subtract {b} from {a}.", "Take {b} away from {a}."],
           "multiply": ["What is {a} times {b}?", "Multiply {a} by {b}.", "Compute the product of {a} and {b}."],
           "divide": ["What is {a} divided by {b}?", "Divide {a} by {b}.", "Compute {a} over {b}."]}
    op = c.rng.choice(sorted(ops))
    a, b = c.rng.randint(2, 500), c.rng.randint(2, 50)
    if c.mem.get("prev_number") is not None and c.chance(0.7):  # copy a result of the step before
        n = c.rng.randint(2, 9)
        c.mem["number"] = c.do("multiply", a=c.mem["prev_number"], b=n)["result"]
        return c.say(["Multiply that result by {n}.", "Now multiply that number by {n}.",
                      "What is that times {n}?"], n=n)
    c.mem["number"] = c.do(op, a=a, b=b)["result"]
    return c.say(ops[op], a=a, b=b)


def math_list(c):
    nums = [c.rng.randint(1, 99) for _ in range(c.rng.randint(3, 5))]
    op = c.rng.choice(["mean", "max_value"])
    c.mem["number"] = c.do(op, numbers=nums)["result"]
    text = ", ".join(map(str, nums))
    if op == "mean":
        return c.say(["What is the average of {x}?", "Compute the mean of {x}.", "Average these numbers: {x}."], x=text)
    return c.say(["What is the largest of {x}?", "Find the maximum of {x}.", "Which is biggest: {x}?"], x=text)


MATH = Domain(math_config, [math_binary, math_list], [])

DOMAINS = {"GorillaFileSystem": FILES, "MessageAPI": MESSAGING, "MathAPI": MATH}
