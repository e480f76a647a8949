"""The command line's two rules for every script: a bad flag ends in one line `error: ...`, and
every number a flag takes is checked (finite, sign, range) before any work starts."""

import argparse
import math


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors in one line, `error: ...` on stderr and exit status 2, instead of a
    usage block of 9 to 17 lines before it. --help prints as argparse does."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def check_flags(parser, args, **ranges):
    """One check for every numeric flag of a script. ranges: flag=(low, high), both inclusive,
    either None for no bound, and optionally a third item that says why; flag=None: any finite
    number. A float flag that is NaN or infinite, or a number out of its range, ends in one line
    `error: --x must be ...` (exit 1). A numeric flag of the parser without an entry here is a bug
    of the script (AssertionError): no flag goes unchecked."""
    numeric = {a.dest for a in parser._actions if a.type in (int, float)}
    assert numeric == set(ranges), f"flags without a range, or ranges without a flag: {numeric ^ set(ranges)}"
    for key, bounds in ranges.items():
        value, flag = getattr(args, key), "--" + key.replace("_", "-")
        if value is None:  # unset: the script decides (e.g. --max-tasks: all)
            continue
        if not math.isfinite(value):
            raise SystemExit(f"error: {flag} must be a finite number (got {value})")
        low, high, *why = bounds or (None, None)
        if (low is not None and value < low) or (high is not None and value > high):
            want = (f"in [{low}, {high}]" if low is not None and high is not None else
                    f"at least {low}" if low is not None else f"at most {high}")
            raise SystemExit(f"error: {flag} must be {want} (got {value})" + "".join(f": {w}" for w in why))
