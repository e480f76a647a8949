"""The tool environment: a safe call parser, the executor, the BFCL-style checker.

The model writes calls as a Python-style list, `[cd(folder='docs'), mkdir(dir_name='tmp')]`.
We read that text with `ast.parse` and accept only the tiny subset we need: plain function names,
keyword arguments, literal values. Nothing is ever evaluated or executed (no eval/exec anywhere):
the AST is walked and literals are rebuilt by hand.

Result strings (what the model sees as tool output), one per call:
    success -> json.dumps(result), e.g. '{"booking_id": "4821", "travel_cost": 512.0}'
    failure -> 'Error: <why>' (parse error, unknown function, bad arguments, domain error...)
"""

import ast
import inspect
import io
import json
import math
import tokenize
import warnings
from collections import Counter

from nanoparl.world.registry import CLASSES, function_names

MAX_TEXT = 2000      # characters in one call list
MAX_CALLS = 8        # calls in one call list
MAX_DEPTH = 4        # nesting of a literal argument ([[1]] has depth 2)
MAX_NODES = 200      # literal elements in one call list
MAX_STR = 500        # characters in one string literal
MAX_BRACKETS = 16    # bracket nesting (outside strings) in the raw text, checked before ast.parse
MAX_STEPS = 20       # BFCL: more assistant steps than this in one user turn fails the turn


class ParseError(ValueError):
    pass


# ----------------------------------------------------------------------------
# Parsing

def _literal(node, depth, budget):
    """Rebuild a literal from its AST node. budget is a one-element list counting nodes."""
    budget[0] += 1
    if budget[0] > MAX_NODES:
        raise ParseError(f"arguments too large (more than {MAX_NODES} values)")
    if depth > MAX_DEPTH:
        raise ParseError(f"arguments nested deeper than {MAX_DEPTH}")
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, (bool, str)):
            if isinstance(value, str) and len(value) > MAX_STR:
                raise ParseError(f"string longer than {MAX_STR} characters")
            return value
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ParseError("numbers must be finite")
            if isinstance(value, int) and abs(value) > 10**15:
                raise ParseError("integer too large")
            return value
        raise ParseError(f"unsupported literal of type {type(value).__name__}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        value = _literal(node.operand, depth, budget)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, depth + 1, budget) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None or not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise ParseError("dict keys must be strings")
            out[key.value] = _literal(value, depth + 1, budget)
        return out
    raise ParseError(f"argument is not a literal ({type(node).__name__})")


def _call(node, budget):
    if not isinstance(node, ast.Call):
        raise ParseError(f"expected a function call, got {type(node).__name__}")
    if not isinstance(node.func, ast.Name):
        raise ParseError("function must be a plain name (no attributes, no nested calls)")
    name = node.func.id
    if name.startswith("_"):
        raise ParseError(f"function names may not start with '_': {name}")
    if node.args:
        raise ParseError(f"{name}: use keyword arguments only (name=value)")
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ParseError(f"{name}: ** arguments are not allowed")
        if kw.arg in kwargs:
            raise ParseError(f"{name}: argument {kw.arg} given twice")
        kwargs[kw.arg] = _literal(kw.value, 1, budget)
    return name, kwargs


def _bracket_depth(text):
    """Deepest bracket nesting of the text, brackets inside string literals not counted.

    A guard run before ast.parse, so the parser never sees pathological nesting. We use the tokenizer
    (a loop, no recursion) because it knows Python's string rules: `echo(content='((((')` has
    depth 1, eight `max_value(numbers=[1, 2])` in one list have depth 3. Text the tokenizer cannot
    read is left to ast.parse, which refuses it with a proper message."""
    depth = deepest = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type != tokenize.OP:
                continue
            if tok.string in ("(", "[", "{"):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_BRACKETS:
                    break  # no need to read on
            elif tok.string in (")", "]", "}"):
                depth -= 1
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass
    return deepest


def parse_calls(text):
    """'[f(a=1), g(b="x")]' or 'f(a=1)' -> [('f', {'a': 1}), ('g', {'b': 'x'})]; else ParseError."""
    if not isinstance(text, str):
        raise ParseError("call text must be a string")
    text = text.strip()
    if not text:
        raise ParseError("empty call text")
    if len(text) > MAX_TEXT:
        raise ParseError(f"call text longer than {MAX_TEXT} characters")
    # the count of all opening brackets bounds the depth from above: only above the limit (rare)
    # does the exact depth need the tokenizer
    if sum(map(text.count, "([{")) > MAX_BRACKETS and _bracket_depth(text) > MAX_BRACKETS:
        raise ParseError(f"brackets nested deeper than {MAX_BRACKETS}")
    try:
        with warnings.catch_warnings():  # e.g. invalid escapes in model text: not our console's business
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise ParseError(f"not a valid call list: {type(e).__name__}") from None
    body = tree.body
    nodes = body.elts if isinstance(body, (ast.List, ast.Tuple)) else [body]
    if not nodes:
        raise ParseError("empty call list")
    if len(nodes) > MAX_CALLS:
        raise ParseError(f"more than {MAX_CALLS} calls in one list")
    budget = [0]
    return [_call(node, budget) for node in nodes]


def format_call(name, kwargs):
    """The inverse of parse_calls for one call: format_call('cd', {'folder': 'x'}) -> "cd(folder='x')"."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


# ----------------------------------------------------------------------------
# Executing

_PARAMS = {}  # function name -> its inspect parameters


def _type_ok(value, annotation):
    if isinstance(value, bool) and annotation is not bool:
        return False  # True is an int in Python; we do not let it pass as a number
    if annotation is float:
        return isinstance(value, (int, float))
    return isinstance(value, annotation)


class ToolEnv:
    """Live instances of the involved API classes, persistent across turns.

    excluded_functions are held out (the miss_func category) until add_functions() makes them
    available. n_calls / n_errors count executed calls and those whose result is an error
    (a text that does not parse counts as one errored call).

    An exception inside a tool is a bug in the tool, not a model mistake. By default it becomes an
    'Error: ...' result, so one bug cannot end a long RL run; with `strict` (tests switch it on)
    it is raised, so tests see it."""

    strict = False

    def __init__(self, involved_classes, initial_config=None, excluded_functions=()):
        initial_config = initial_config or {}
        self.instances = {}
        for name in involved_classes:
            if name not in CLASSES:
                raise ValueError(f"unknown API class {name!r} (known: {', '.join(CLASSES)})")
            instance = CLASSES[name]()
            instance._load_scenario(initial_config.get(name, {}))
            self.instances[name] = instance
        self._owner = {f: self.instances[c] for c in involved_classes for f in function_names([c])}
        self.excluded = set(excluded_functions)
        self.n_calls = 0
        self.n_errors = 0

    @classmethod
    def for_task(cls, task):
        """A fresh environment for a task, with all its missed functions held out."""
        held = [f for names in task.get("missed_function", {}).values() for f in names]
        try:
            return cls(task["involved_classes"], task["initial_config"], held)
        except ValueError as e:  # a bad class name or config: say which task
            raise ValueError(f"task {task.get('id')!r}: {e}") from None

    def add_functions(self, names):
        self.excluded -= set(names)

    def available_functions(self):
        return [f for f in self._owner if f not in self.excluded]

    def state(self):
        """Public state of every instance: {class name: {attribute: value}} (what the checker compares)."""
        return {name: inst._state() for name, inst in self.instances.items()}

    def run(self, name, kwargs):
        """Execute one parsed call -> (ok, value): value is the result dict, or the error text."""
        if name not in self._owner:
            return False, f"unknown function {name!r}"
        if name in self.excluded:
            return False, f"function {name!r} is not available"
        method = getattr(self._owner[name], name)
        if name not in _PARAMS:  # inspect.signature is slow; names are unique across classes
            _PARAMS[name] = inspect.signature(method).parameters
        params = _PARAMS[name]
        for key in kwargs:
            if key not in params:
                return False, f"{name}() got an unexpected argument {key!r}"
        args = {}
        for key, p in params.items():
            if key not in kwargs:
                if p.default is inspect.Parameter.empty:
                    return False, f"{name}() is missing the argument {key!r}"
                continue
            value = kwargs[key]
            if not (value is None and p.default is None) and not _type_ok(value, p.annotation):
                return False, f"{name}() argument {key!r} must be {p.annotation.__name__}, got {value!r}"
            # float parameters get floats, so 500 and 500.0 give the same state and the same JSON
            args[key] = float(value) if p.annotation is float and value is not None else value
        try:
            result = method(**args)
            # allow_nan=False: Infinity and NaN are not JSON; a tool must turn them into an error itself
            value = json.loads(json.dumps(result, allow_nan=False))
        except Exception as e:  # a bug in a tool must not take the episode down
            if self.strict:
                raise
            return False, f"{name}() failed: {type(e).__name__}"
        if isinstance(value, dict) and "error" in value:
            return False, str(value["error"])
        return True, value

    def call(self, name, kwargs):
        """Execute one parsed call -> its result string."""
        self.n_calls += 1
        ok, value = self.run(name, kwargs)
        if not ok:
            self.n_errors += 1
            return f"Error: {value}"
        return json.dumps(value)

    def execute(self, call_text):
        """Model text -> one result string per call, or a single 'Error: ...'. Never raises
        (unless `strict`, on a bug)."""
        try:
            calls = parse_calls(call_text)
        except ParseError as e:
            self.n_calls += 1
            self.n_errors += 1
            return [f"Error: {e}"]
        except Exception as e:  # a bug in the parser: same policy as a bug in a tool
            if self.strict:
                raise
            self.n_calls += 1
            self.n_errors += 1
            return [f"Error: could not parse the calls ({type(e).__name__})"]
        results = []
        for name, kwargs in calls:
            try:
                results.append(self.call(name, kwargs))
            except Exception as e:  # run() catches tool bugs; this is the last line of defence
                if self.strict:
                    raise
                self.n_errors += 1
                results.append(f"Error: {name}() failed: {type(e).__name__}")
        return results


# ----------------------------------------------------------------------------
# Checker (BFCL v3 multi-turn semantics)

def parse_ground_truth(task):
    """task -> one list of parsed calls per turn. A ground-truth call that does not parse, or that
    names a function outside the task's classes, is a broken task: ValueError naming the task, the
    turn and the call (model text, by contrast, never raises)."""
    known = set(function_names([c for c in task["involved_classes"] if c in CLASSES]))
    turns = []
    for k, calls in enumerate(task["ground_truth"]):
        parsed = []
        for call in calls:
            try:
                parsed += parse_calls(call)
            except ParseError as e:
                raise ValueError(f"task {task.get('id')!r}, turn {k}: ground-truth call {call!r}: {e}") from None
            unknown = [name for name, _ in parsed if name not in known]
            if unknown:
                raise ValueError(f"task {task.get('id')!r}, turn {k}: ground-truth call {call!r} uses "
                                 f"{unknown[0]!r}, which no class of the task has")
        turns.append(parsed)
    return turns


def check(task, model_turns):
    """Compare what the model did with the ground truth, turn by turn.

    model_turns[k] lists the call-list texts the model executed during user turn k, in order.
    Returns {"passed", "turns" (per-turn bool), "error_type", "failed_turn"}; error_type is the
    reason of the first failed turn: force_terminated, unexpected_call, empty_turn,
    state_mismatch or response_mismatch (checked in that order)."""
    model_env, truth_env = ToolEnv.for_task(task), ToolEnv.for_task(task)
    truth = parse_ground_truth(task)
    missed = task.get("missed_function", {})
    model_results = Counter()  # all model results so far: BFCL allows an answer from any turn
    turns, error_type, failed_turn = [], None, None
    for k, truth_calls in enumerate(task["ground_truth"]):
        added = missed.get(str(k), [])
        model_env.add_functions(added)
        truth_env.add_functions(added)
        steps = model_turns[k] if k < len(model_turns) else []
        reason = None
        if len(steps) > MAX_STEPS:
            reason = "force_terminated"
        else:
            for text in steps:
                model_results.update(model_env.execute(text))
        truth_results = Counter(truth_env.call(name, kwargs) for name, kwargs in truth[k])
        if reason is None:
            if not truth_calls:
                reason = "unexpected_call" if steps else None
            elif not steps:
                reason = "empty_turn"
            elif model_env.state() != truth_env.state():
                reason = "state_mismatch"
            elif truth_results - model_results:  # Counter difference: what the model never got
                reason = "response_mismatch"
        turns.append(reason is None)
        if reason is not None and error_type is None:
            error_type, failed_turn = reason, k
    return {"passed": all(turns), "turns": turns, "error_type": error_type, "failed_turn": failed_turn}
