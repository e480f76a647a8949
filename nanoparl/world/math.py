"""The math tool (BFCL's MathAPI, a few of its functions): arithmetic on numbers the user gives or
that earlier calls returned ("multiply that price by 3"). Conventions: base.py.
"""

import math

from nanoparl.world.base import API, Domain, err

# ----------------------------------------------------------------------------
# The tool: stateless, so every call is read-only.

def _numbers(values):
    if not isinstance(values, list) or not values:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return values


def _finite(x):
    """The result dict, or an error when the number overflowed: Infinity and NaN are not JSON."""
    if not math.isfinite(x):
        return err("result is not a finite number")
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
            return err("division by zero")
        return _finite(a / b)

    def mean(self, numbers: list):
        """Average of a list of numbers."""
        numbers = _numbers(numbers)
        if numbers is None:
            return err("numbers must be a non-empty list of numbers")
        return _finite(sum(numbers) / len(numbers))

    def max_value(self, numbers: list):
        """Largest of a list of numbers."""
        numbers = _numbers(numbers)
        if numbers is None:
            return err("numbers must be a non-empty list of numbers")
        return {"result": max(numbers)}


# ----------------------------------------------------------------------------
# Intents (stateless). They leave a number they produced in c.mem["number"]; the next intent sees
# it as c.mem["prev_number"] (tasks._run_turn), so "that number" is never ambiguous.

def math_config(c):
    return {}


def math_two_numbers(c):
    ops = {"add": ["What is {a} plus {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}."],
           "subtract": ["What is {a} minus {b}?", "Subtract {b} from {a}.",
                        "Take {b} away from {a}."],
           "multiply": ["What is {a} times {b}?", "Multiply {a} by {b}.",
                        "Compute the product of {a} and {b}."],
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


def math_of_list(c):
    nums = [c.rng.randint(1, 99) for _ in range(c.rng.randint(3, 5))]
    op = c.rng.choice(["mean", "max_value"])
    c.mem["number"] = c.do(op, numbers=nums)["result"]
    text = ", ".join(map(str, nums))
    if op == "mean":
        return c.say(["What is the average of {x}?", "Compute the mean of {x}.",
                      "Average these numbers: {x}."], x=text)
    return c.say(["What is the largest of {x}?", "Find the maximum of {x}.",
                  "Which is biggest: {x}?"], x=text)


MATH = Domain(math_config, [math_two_numbers, math_of_list], [])
