"""Robustness of the environment against legal but hostile model output, and clear errors for
broken task files: size limits in the tools, finite numbers, the parser's nesting guard."""

import json
import time
import tracemalloc

import pytest

from nanoparl.env import MAX_BRACKETS, ParseError, ToolEnv, check, parse_calls, parse_ground_truth
from nanoparl.world import base, filesystem
from nanoparl.world.math import MathAPI
from nanoparl.world.tasks import generate_splits, load_tasks


@pytest.fixture(autouse=True, scope="module")
def strict_env():
    """Tool exceptions are bugs: in these tests they must raise, not hide behind an Error result."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ToolEnv, "strict", True)
        yield


def _fs(root=None):
    return ToolEnv(["GorillaFileSystem"], {"GorillaFileSystem": {"root": root or {}}})


# ----------------------------------------------------------------------------
# File system limits


def test_folder_doubling_attack_stays_bounded():
    """cp a folder next to itself, mv the copy into it: each pair doubles the folder. Without
    limits, six steps of four pairs reach gigabytes; with them, memory and time stay small."""
    env = _fs({"X": {"f": "hello"}})
    tracemalloc.start()
    start = time.perf_counter()
    outputs = []
    for step in range(6):
        pairs = [f"cp(source='X', destination='Y{step}{i}'), mv(source='Y{step}{i}', destination='X')"
                 for i in range(4)]
        outputs += env.execute("[" + ", ".join(pairs) + "]")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 5 and peak < 50e6
    assert any(r.startswith("Error: file system full") for r in outputs)
    assert all(r == "{}" or r.startswith("Error: ") for r in outputs)
    entries, chars, depth = filesystem._usage(env.state()["GorillaFileSystem"]["root"])
    assert entries - 1 <= filesystem.MAX_FS_ENTRIES and depth - 1 <= filesystem.MAX_FS_DEPTH


def test_each_file_system_limit_refuses_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(filesystem, "MAX_FS_ENTRIES", 5)
    monkeypatch.setattr(filesystem, "MAX_FS_CHARS", 30)
    monkeypatch.setattr(filesystem, "MAX_FS_DEPTH", 3)
    env = _fs({"a": {"b": {}}, "f": "x" * 20})
    before = env.state()
    assert env.execute(f"echo(content='{'y' * 11}', file_name='g')")[0].startswith("Error: file system full")
    assert env.execute(f"echo(content='{'y' * 31}', file_name='f')")[0].startswith("Error: file system full")
    assert env.execute("cp(source='f', destination='f2')")[0].startswith("Error: file system full")
    assert env.state() == before
    assert env.execute(f"echo(content='{'y' * 29}', file_name='f')") == ["{}"]  # replacing: 29 fits
    # depth: a/b/c is a folder at depth 3; a file inside it would be at depth 4
    assert env.execute("[cd(folder='a/b'), mkdir(dir_name='c'), cd(folder='c')]") == [
        '{"current_working_directory": "/workspace/a/b"}', "{}", '{"current_working_directory": "/workspace/a/b/c"}']
    assert env.execute("touch(file_name='t')")[0] == "Error: folders nested deeper than 3 levels"
    assert env.execute("mkdir(dir_name='d')")[0] == "Error: folders nested deeper than 3 levels"
    # moving a subtree deeper is refused too: a (3 levels) into a new sibling folder would make 4
    env.execute("cd(folder='../../..')")
    assert env.execute("mkdir(dir_name='e')") == ["{}"]  # 5 entries now: a, b, c, f, e
    assert env.execute("mv(source='a', destination='e')")[0] == "Error: folders nested deeper than 3 levels"
    assert env.execute("touch(file_name='t')")[0].startswith("Error: file system full: more than 5")


def test_initial_tree_over_the_limits_is_refused(monkeypatch):
    monkeypatch.setattr(filesystem, "MAX_FS_ENTRIES", 2)
    with pytest.raises(ValueError, match="initial tree too big"):
        _fs({"a": {}, "b": {}, "c": {}})
    with pytest.raises(ValueError, match="task 'x'.*initial tree too big"):
        ToolEnv.for_task({"id": "x", "involved_classes": ["GorillaFileSystem"],
                          "initial_config": {"GorillaFileSystem": {"root": {"a": {}, "b": {}, "c": {}}}}})


# ----------------------------------------------------------------------------
# Service limits and finite numbers


def test_growing_service_state_is_capped(monkeypatch):
    monkeypatch.setattr(base, "MAX_ITEMS", 2)
    stocks = {"AAPL": {"name": "Apple", "price": 1.0, "percent_change": 0.0}}
    env = ToolEnv(["TicketAPI", "TradingBot", "TravelAPI", "MessageAPI"],
                  {"TicketAPI": {"current_user": "ann"}, "TradingBot": {"authenticated": True, "stocks": stocks},
                   "TravelAPI": {"authenticated": True}, "MessageAPI": {"user_map": {"ann": "1234"}}})
    card = "register_credit_card(card_number='1234567812345678', expiration_date='01/2030', " \
           "cardholder_name='Ann', card_verification_number=123)"
    calls = {"tickets": "create_ticket(title='t')",
             "orders": "place_order(order_type='Buy', symbol='AAPL', price=1.0, amount=1)",
             "credit cards": card}
    for what, call in calls.items():
        out = env.execute("[" + ", ".join([call] * 3) + "]")
        assert [r.startswith("Error") for r in out] == [False, False, True], what
        assert out[2] == f"Error: too many {what} (at most 2)"
    card_id = next(iter(env.instances["TravelAPI"].credit_cards))
    book = (f"book_flight(card_id='{card_id}', travel_date='2026-01-02', travel_from='BOS', travel_to='CDG', "
            "travel_class='economy')")
    assert env.execute("[" + ", ".join([book] * 3) + "]")[2] == "Error: too many bookings (at most 2)"
    assert env.execute("message_login(user_id='1234')") == ['{"login_status": true}']
    out = env.execute("[add_contact(user_name='a'), add_contact(user_name='b'), add_contact(user_name='c')]")
    assert out[2] == "Error: too many contacts (at most 2)"
    out = env.execute("[" + ", ".join(["send_message(receiver_id='1234', message='hi')"] * 3) + "]")
    assert out[2] == "Error: too many messages (at most 2)"


def test_money_stays_finite():
    stocks = {"AAPL": {"name": "Apple", "price": 1.0, "percent_change": 0.0}}
    env = ToolEnv(["TradingBot"], {"TradingBot": {"authenticated": True, "stocks": stocks}})
    out = env.execute("[fund_account(amount=1e308), fund_account(amount=1e308), "
                      "place_order(order_type='Sell', symbol='AAPL', price=1e308, amount=10), get_account_info()]")
    assert out[:3] == ["Error: amount above the limit of 1e+09", "Error: amount above the limit of 1e+09",
                       "Error: price above the limit of 1e+09"]
    assert json.loads(out[3]) == {"balance": 10000.0, "open_orders": 0}


@pytest.mark.parametrize("call", ["multiply(a=1e308, b=1e308)", "add(a=1e308, b=1e308)",
                                  "subtract(a=-1e308, b=1e308)", "divide(a=1e308, b=1e-308)",
                                  "mean(numbers=[1e308, 1e308])"])
def test_math_overflow_is_an_error_not_infinity(call):
    assert ToolEnv(["MathAPI"]).execute(call) == ["Error: result is not a finite number"]


def test_every_math_result_is_strict_json():
    env = ToolEnv(["MathAPI"])
    out = env.execute("[multiply(a=1e154, b=1e154), max_value(numbers=[1e308, -1e308]), add(a=0.1, b=0.2)]")
    assert [json.loads(r) for r in out] == [{"result": 1e308}, {"result": 1e308}, {"result": 0.3}]


# ----------------------------------------------------------------------------
# Bugs: hidden from the model, visible to tests


def test_non_finite_result_or_exception_in_a_tool(monkeypatch):
    monkeypatch.setattr(MathAPI, "add", lambda self, a, b: {"result": float("inf")})
    env = ToolEnv(["MathAPI"])
    with pytest.raises(ValueError):  # strict: a tool that returns Infinity is a bug
        env.execute("add(a=1, b=2)")
    monkeypatch.setattr(ToolEnv, "strict", False)
    assert env.execute("[add(a=1, b=2), subtract(a=3, b=1)]") == ["Error: add() failed: ValueError",
                                                                  '{"result": 2.0}']


def test_execute_never_raises_when_not_strict(monkeypatch):
    monkeypatch.setattr(ToolEnv, "strict", False)
    env = ToolEnv(["MathAPI"])

    def broken_call(self, name, kwargs):
        self.n_calls += 1
        raise SystemError("what a 3 GB json.dumps once raised")
    monkeypatch.setattr(ToolEnv, "call", broken_call)
    assert env.execute("[add(a=1, b=2), add(a=1, b=2)]") == ["Error: add() failed: SystemError"] * 2
    assert (env.n_calls, env.n_errors) == (2, 2)
    monkeypatch.setattr("nanoparl.env.parse_calls", lambda text: 1 / 0)
    assert env.execute("add(a=1, b=2)") == ["Error: could not parse the calls (ZeroDivisionError)"]
    monkeypatch.setattr(ToolEnv, "strict", True)
    with pytest.raises(ZeroDivisionError):
        env.execute("add(a=1, b=2)")


# ----------------------------------------------------------------------------
# The parser's nesting guard


@pytest.mark.parametrize("text,n", [
    ("[" + ", ".join("max_value(numbers=[1, 2])" for _ in range(8)) + "]", 8),  # 24 brackets, depth 3
    ("echo(content='" + "(" * 40 + "')", 1),                                     # brackets in a string
    ("echo(content=\"[{('\")", 1),                                               # a quote in a string
    ("[" + ", ".join("echo(content='((((', file_name='x')" for _ in range(8)) + "]", 8),
    ("f(a=" + "[" * 4 + "]" * 4 + ", b=[[1], [2], [3], [4], [5], [6], [7], [8], [9]])", 1),
])
def test_brackets_outside_nesting_do_not_count(text, n):
    assert len(parse_calls(text)) == n


@pytest.mark.parametrize("text", [
    "f(a=" + "[" * MAX_BRACKETS + "]" * MAX_BRACKETS + ")",       # depth 17
    "(" * 999 + ")" * 999,
    "f(a='''it's''', b=" + "(" * 40 + "1" + ")" * 40 + ")",       # a quote inside a triple-quoted string
    "f(a='\\'', b=" + "[" * 40 + "]" * 40 + ")",                  # an escaped quote
    "echo(content='x')" + "{" * 1980,
])
def test_deep_nesting_is_refused_before_the_parser(text, monkeypatch):
    monkeypatch.setattr("ast.parse", lambda *a, **k: pytest.fail("ast.parse saw deep nesting"))
    start = time.perf_counter()
    with pytest.raises(ParseError, match="brackets nested deeper"):
        parse_calls(text)
    assert time.perf_counter() - start < 0.5


def test_hostile_long_texts_parse_fast():
    texts = ["'" * 1999, "f(a='" + "\\" * 1990 + "')", "f(a=" + "-" * 1990 + "1)", "1+" * 999 + "1",
             "'''" + "(" * 1990 + "'''", "[" + "f(), " * 399 + "]", '"' + "([{" * 600, "#" + "(" * 1990]
    start = time.perf_counter()
    for text in texts:
        with pytest.raises(ParseError):
            parse_calls(text)
    assert time.perf_counter() - start < 1.0


# ----------------------------------------------------------------------------
# Broken tasks: one clear error naming the class, the task, the file and line


def test_unknown_class_is_named():
    with pytest.raises(ValueError, match="unknown API class 'NoSuchAPI'"):
        ToolEnv(["NoSuchAPI"])
    with pytest.raises(ValueError, match="task 't7': unknown API class 'NoSuchAPI'"):
        ToolEnv.for_task({"id": "t7", "involved_classes": ["NoSuchAPI"], "initial_config": {}})


def _task(ground_truth, classes=("MathAPI",)):
    return {"id": "t1", "category": "base", "involved_classes": list(classes), "initial_config": {},
            "question": [[{"role": "user", "content": "q"}]] * len(ground_truth),
            "ground_truth": ground_truth, "missed_function": {}}


def test_broken_ground_truth_names_the_task():
    assert parse_ground_truth(_task([["add(a=1, b=2)"], ["[mean(numbers=[1]), add(a=0, b=0)]"]])) == [
        [("add", {"a": 1, "b": 2})], [("mean", {"numbers": [1]}), ("add", {"a": 0, "b": 0})]]
    with pytest.raises(ValueError, match=r"task 't1', turn 1: ground-truth call 'add\(a=1,'"):
        check(_task([["add(a=1, b=2)"], ["add(a=1,"]]), [["add(a=1, b=2)"], ["add(a=1, b=2)"]])
    with pytest.raises(ValueError, match="task 't1', turn 0: .* uses 'pwd', which no class of the task has"):
        parse_ground_truth(_task([["pwd()"]]))


def nested(levels):
    config = {}
    for _ in range(levels):
        config = {"x": config}
    return config


def test_load_tasks_names_file_line_and_task(tmp_path):
    good = generate_splits({"classes": ["MathAPI"], "max_turns": 1, "categories": ["base"]}, 0, {"train": 1})["train"][0]
    path = tmp_path / "tasks.jsonl"
    cases = [
        (dict(good, ground_truth=[["add(a=1,"]]), r"tasks.jsonl:2: task '.*', turn 0: ground-truth call"),
        (dict(good, involved_classes=["NoSuchAPI"]), r"tasks.jsonl:2: task '.*': unknown API class 'NoSuchAPI'"),
        (dict(good, initial_config={"MathAPI": {"colour": 1}}), r"tasks.jsonl:2: task '.*': MathAPI: unknown config"),
        (dict(good, question="q"), r"tasks.jsonl:2: question must be a list of turns"),
        (dict(good, missed_function=["add"]), r"tasks.jsonl:2: missed_function must map"),
        # found by a hostile probe: each was a traceback (KeyError, RecursionError) in eval or training
        (dict(good, missed_function={"1": ["no_such_function"]}, question=good["question"] * 2,
              ground_truth=[[], *good["ground_truth"]]), r"tasks.jsonl:2: missed_function names \['no_such_function'\]"),
        (dict(good, initial_config={"MathAPI": nested(60)}), r"tasks.jsonl:2: task '.*' nests deeper than 50 levels"),
        (dict(good, id=7), r"tasks.jsonl:2: id must be a string"),
        (dict(good, category="other"), r"tasks.jsonl:2: id must be a string and category one of"),
        (dict(good, ground_truth=[[1]]), r"tasks.jsonl:2: ground_truth must be one list of call strings"),
        (dict(good, initial_config={"MathAPI": []}), r"tasks.jsonl:2: involved_classes must be a list"),
        (dict(good, involved_classes=["GorillaFileSystem"], initial_config={"GorillaFileSystem": {"root": 5}},
              ground_truth=[["pwd()"]]), r"tasks.jsonl:2: task '.*': a value of initial_config has the wrong type"),
    ]
    for bad, message in cases:
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=message):
            load_tasks(path)
    path.write_text(json.dumps(good) + "\n" + '{"a": ' * 100000 + "1" + "}" * 100000 + "\n")
    with pytest.raises(ValueError, match="tasks.jsonl:2: nests deeper than Python's JSON reader can go"):
        load_tasks(path)
    path.write_bytes(json.dumps(good).encode() + b"\n\xff\xfe random bytes\n")
    with pytest.raises(ValueError, match=r"tasks.jsonl: not UTF-8 text"):
        load_tasks(path)
    path.write_text(json.dumps(good) + "\n")
    assert load_tasks(path) == [good]
