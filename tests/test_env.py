"""The tool environment: APIs, the safe parser, the executor and the BFCL-style checker."""

import builtins
import json
import random

import pytest

from nanoparl.env import ParseError, ToolEnv, check, format_call, parse_calls
from nanoparl.world.registry import CLASSES, FUNCTION_DOCS, function_names, public_methods

@pytest.fixture(autouse=True, scope="module")
def strict_env():
    """Tool exceptions are bugs: here they must raise, not hide behind an Error result."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ToolEnv, "strict", True)
        yield


# ----------------------------------------------------------------------------
# APIs


def test_function_names_unique_and_documented():
    names = [n for cls in CLASSES.values() for n in public_methods(cls)]
    assert len(names) == len(set(names)) == len(FUNCTION_DOCS)
    for cls in CLASSES.values():
        assert set(cls._read_only) <= set(public_methods(cls))
    names = function_names(["GorillaFileSystem"], exclude=("rm",))
    assert "cd" in names and "rm" not in names
    assert FUNCTION_DOCS["cd"][0] == "cd(folder: str)"


def test_state_is_public_attributes_only():
    env = ToolEnv(["GorillaFileSystem"], {"GorillaFileSystem": {"root": {"a": {}}}})
    env.execute("cd(folder='a')")
    assert env.state() == {"GorillaFileSystem": {"root": {"a": {}}}}  # _cwd is private
    with pytest.raises(ValueError):
        CLASSES["TicketAPI"]()._load_scenario({"no_such_key": 1})


def test_ids_are_four_digits_and_deterministic():
    config = {"TradingBot": {"authenticated": True, "id_seed": 42,
                             "stocks": {"AAPL": {"name": "Apple", "price": 10.0, "percent_change": 0.0}}}}
    results = []
    for _ in range(2):
        env = ToolEnv(["TradingBot"], config)
        call = "place_order(order_type='Buy', symbol='AAPL', price=10.0, amount=1)"
        results.append([json.loads(env.execute(call)[0])["order_id"] for _ in range(5)])
    assert results[0] == results[1]
    assert all(1000 <= i <= 9999 for i in results[0]) and len(set(results[0])) == 5


# ----------------------------------------------------------------------------
# Parsing


def test_parse_calls_accepts_literals():
    text = "[f(a=1, b=-2.5, c='x'), g(d=[1, (2, 3)], e={'k': None}, t=True)]"
    assert parse_calls(text) == [("f", {"a": 1, "b": -2.5, "c": "x"}),
                                 ("g", {"d": [1, [2, 3]], "e": {"k": None}, "t": True})]
    assert parse_calls("  pwd()  ") == [("pwd", {})]
    call = format_call("edit_ticket", {"ticket_id": 4821, "updates": {"priority": 3}})
    assert parse_calls(call) == [("edit_ticket", {"ticket_id": 4821, "updates": {"priority": 3}})]


@pytest.mark.parametrize("text", [
    "", "[]", "f(1)", "os.system('x')", "__import__('os').system('x')", "().__class__",
    "f(a=().__class__)", "__f(a=1)", "f(**{'a': 1})", "f(*[1])", "f(a=g(b=1))", "f(a=lambda: 1)",
    "f(a=[x for x in y])", "f(a=f'{x}')", "f(a='a'*10**9)", "f(a=10**10**10)", "f(a=x)", "import os",
    "f(a=1, a=2)", "[f(a=1)" , "f(a={1, 2})", "f(a=1j)", "f(a=1e999)", "f(a={1: 2})", "f(a=b'x')",
    "(" * 500 + ")" * 500, "[" * 30 + "]" * 30, "f(a=" + "[" * 10 + "]" * 10 + ")", "f(a=-'x')",
    "f(a=1) if x else g(b=2)", "f(a=1); g()", "\x00", "f(a='\x00')\x00", "x = f(a=1)", "'abc'",
    "f(a=" + "9" * 5000 + ")", "[" + ", ".join("f()" for _ in range(20)) + "]", "f(a=(yield))",
])
def test_parse_calls_rejects(text):
    with pytest.raises(ParseError):
        parse_calls(text)


# ----------------------------------------------------------------------------
# Executing


def test_execute_errors_become_results():
    env = ToolEnv(["GorillaFileSystem", "MathAPI"], {}, excluded_functions=["rm"])
    out = env.execute("[nope(), cat(file_name='x'), cd(folder=1), cd(), cd(folder='a', x=1), rm(file_name='a'),"
                      " divide(a=1, b=0), add(a=1, b=2)]")
    assert out[-1] == '{"result": 3.0}'
    assert all(r.startswith("Error: ") for r in out[:-1])
    assert "not available" in out[5]
    assert env.n_calls == 8 and env.n_errors == 7
    assert env.execute("[broken") [0].startswith("Error: ")
    assert env.n_calls == 9 and env.n_errors == 8
    env.add_functions(["rm"])
    assert env.execute("rm(file_name='a')")[0] == "Error: no such file or directory: a"


def test_exception_inside_a_tool_is_an_error_result(monkeypatch):
    def boom(self):
        raise RuntimeError("bug")
    monkeypatch.setattr(CLASSES["GorillaFileSystem"], "pwd", boom)
    env = ToolEnv(["GorillaFileSystem"], {})
    with pytest.raises(RuntimeError):  # strict (tests): the bug is visible
        env.execute("pwd()")
    monkeypatch.setattr(ToolEnv, "strict", False)  # the default: the episode goes on
    assert env.execute("pwd()") == ["Error: pwd() failed: RuntimeError"]


def _hostile(rng):
    pieces = ["__import__('os').system('touch SENTINEL')", "open('SENTINEL', 'w')", "().__class__.__base__",
              "exec('x')", "eval('1')", "lambda: 0", "[x for x in range(9)]", "f'{open(1)}'", "*a", "**k",
              "'a'*10**9", "10**10**10", "(((", "]]]", "\x00", "é", "ü()", "pwd()", "cd(folder='..')",
              "ls(a=True)", "mkdir(dir_name=", "=", ",", "getattr(x, 'y')", "__class__", "globals()",
              "import os", "def f(): pass", "yield 1", "await x", "f(a=1).b", "f(a=1)[0]", "{", "'", '"',
              "\\", "#", "\n", "touch(file_name=__file__)", "breakpoint()", "echo(content=chr(65))"]
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
    if kind == 1:
        return "[" + ", ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) + "]"
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 60))).decode("latin-1")
    return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randint(0, 40)))


def test_fuzz_never_raises_never_runs_code(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("eval", "exec", "breakpoint", "open"):
        monkeypatch.setattr(builtins, name, lambda *a, **k: pytest.fail("code was executed"))
    rng = random.Random(0)
    env = ToolEnv(list(CLASSES), {})
    for _ in range(3000):
        out = env.execute(_hostile(rng))
        assert isinstance(out, list) and out and all(isinstance(r, str) for r in out)
    assert not (tmp_path / "SENTINEL").exists()


# ----------------------------------------------------------------------------
# Checker


def _trading_task():
    config = {"TradingBot": {"authenticated": True, "balance": 1000.0, "id_seed": 5, "watchlist": ["AAPL"],
                             "stocks": {"AAPL": {"name": "Apple", "price": 100.0, "percent_change": 1.0}}}}
    env = ToolEnv(["TradingBot"], config)
    order = json.loads(env.execute("place_order(order_type='Buy', symbol='AAPL', price=100.0, amount=2)")[0])
    oid = order["order_id"]
    return {"id": "t", "category": "miss_param", "involved_classes": ["TradingBot"], "initial_config": config,
            "question": [[{"role": "user", "content": q}] for q in ["buy", "cancel something", "which?", "cancel"]],
            "ground_truth": [["get_stock_info(symbol='AAPL')",
                              "place_order(order_type='Buy', symbol='AAPL', price=100.0, amount=2)"],
                             [],
                             [f"get_order_details(order_id={oid})", "get_watchlist()"],
                             [f"cancel_order(order_id={oid})"]],
            "missed_function": {}}, oid


def _as_steps(task):
    return [list(turn) for turn in task["ground_truth"]]


def test_checker_accepts_ground_truth_and_harmless_variants():
    task, oid = _trading_task()
    assert check(task, _as_steps(task)) == {"passed": True, "turns": [True] * 4, "error_type": None, "failed_turn": None}
    steps = _as_steps(task)
    steps[2] = ["get_account_info()", "get_watchlist()", f"get_order_details(order_id={oid})", "get_watchlist()"]
    assert check(task, steps)["passed"]  # extra and reordered reads
    steps = [["[" + ", ".join(turn) + "]"] if turn else [] for turn in task["ground_truth"]]
    assert check(task, steps)["passed"]  # one call list per turn


@pytest.mark.parametrize("mutate,error_type,turn", [
    (lambda s, oid: s[0].pop(1), "state_mismatch", 0),                                  # drop a call
    (lambda s, oid: s[0].pop(0), "response_mismatch", 0),                               # drop a read
    (lambda s, oid: s[0].__setitem__(1, s[0][1].replace("amount=2", "amount=3")), "state_mismatch", 0),
    (lambda s, oid: s[3].__setitem__(0, f"cancel_order(order_id={oid + 1})"), "state_mismatch", 3),  # wrong ID
    (lambda s, oid: s[2].__setitem__(0, f"get_order_details(order_id={oid - 1})"), "response_mismatch", 2),
    (lambda s, oid: s[3].__setitem__(0, "fund_account(amount=200.0)"), "state_mismatch", 3),  # swapped call
    (lambda s, oid: s[1].append("get_watchlist()"), "unexpected_call", 1),              # answered the ask turn
    (lambda s, oid: s[3].clear(), "empty_turn", 3),
    (lambda s, oid: s[2].extend(["get_watchlist()"] * 19), "force_terminated", 2),      # 21 steps
])
def test_checker_mutations_fail_with_the_right_error(mutate, error_type, turn):
    task, oid = _trading_task()
    steps = _as_steps(task)
    mutate(steps, oid)
    result = check(task, steps)
    assert not result["passed"]
    assert (result["error_type"], result["failed_turn"]) == (error_type, turn)


def test_checker_twenty_steps_is_still_fine():
    task, oid = _trading_task()
    steps = _as_steps(task)
    steps[2].extend(["get_watchlist()"] * 18)
    assert check(task, steps)["passed"]


def test_missed_function_is_unavailable_until_its_turn():
    task, oid = _trading_task()
    task["missed_function"] = {"3": ["cancel_order"]}
    assert check(task, _as_steps(task))["passed"]
    env = ToolEnv.for_task(task)
    assert env.execute(f"cancel_order(order_id={oid})")[0].startswith("Error: function 'cancel_order' is not")
    env.add_functions(["cancel_order"])  # what the agent loop does when turn 3 opens
    assert not env.execute(f"cancel_order(order_id={oid})")[0].startswith("Error: function 'cancel_order' is not")
