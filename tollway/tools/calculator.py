"""The ``calculator`` built-in: arithmetic and common math functions, by an AST walker.

Nothing is evaluated by Python: the expression is parsed with ``ast.parse`` in
``eval`` mode and only numbers, the arithmetic operators, a fixed set of
constants and functions are walked. Names, attributes, subscripts, calls of
anything else, strings and booleans are refused. Integer results are bounded
in bits, and a power is refused *before* it is computed if its result would
pass the bound.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from tollway.tools.config import CalculatorConfig
from tollway.tools.registry import Tool, ToolError

__all__ = ["CalculatorSource", "evaluate"]

Number = int | float

_CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x),
    "exp": math.exp,
    "ln": math.log,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "hypot": math.hypot,
    "degrees": math.degrees,
    "radians": math.radians,
    "floor": math.floor,
    "ceil": math.ceil,
    "trunc": math.trunc,
    "factorial": math.factorial,
    "gcd": math.gcd,
    "lcm": math.lcm,
    "comb": math.comb,
    "perm": math.perm,
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}

_MAX_NODES = 200
_MAX_FACTORIAL = 1000


class _Walker:
    """Evaluates a parsed expression, refusing anything outside the grammar."""

    def __init__(self, max_bits: int) -> None:
        self.max_bits = max_bits

    def check(self, value: Number) -> Number:
        if isinstance(value, int) and value.bit_length() > self.max_bits:
            raise ToolError(f"the result is too large (more than {self.max_bits} bits)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ToolError("the result is not a finite number")
        return value

    def eval(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ToolError(f"unsupported constant {value!r}")
            return self.check(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.eval(node.operand)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Pow):
                return self.check(self.power(left, right))
            op = _BINARY.get(type(node.op))
            if op is None:
                raise ToolError(f"unsupported operator {type(node.op).__name__}")
            try:
                return self.check(op(left, right))
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            except OverflowError:
                raise ToolError("the result is too large") from None
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise ToolError(f"unknown name {node.id!r}")
        if isinstance(node, ast.Call):
            return self.call(node)
        raise ToolError(f"unsupported syntax: {type(node).__name__}")

    def power(self, base: Number, exponent: Number) -> Number:
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            if exponent * math.log2(abs(base)) > self.max_bits:
                raise ToolError(f"the power is too large (more than {self.max_bits} bits)")
        if abs(exponent) > 1_000_000:
            raise ToolError("the exponent is too large")
        try:
            result = base**exponent
        except ZeroDivisionError:
            raise ToolError("zero cannot be raised to a negative power") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
        if isinstance(result, complex):
            raise ToolError("the result is a complex number")
        return result

    def call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ToolError(f"unknown function {name!r}")
        if node.keywords:
            raise ToolError("functions take positional arguments only")
        name = node.func.id
        args = [self.eval(arg) for arg in node.args]
        if name == "factorial" and args and isinstance(args[0], int) and args[0] > _MAX_FACTORIAL:
            raise ToolError(f"factorial is limited to n <= {_MAX_FACTORIAL}")
        if name in ("comb", "perm") and any(isinstance(a, int) and a > 10_000 for a in args):
            raise ToolError(f"{name} is limited to arguments <= 10000")
        try:
            return self.check(_FUNCTIONS[name](*args))
        except (ValueError, TypeError) as exc:
            raise ToolError(f"{name}: {exc}") from None
        except OverflowError:
            raise ToolError(f"{name}: the result is too large") from None


def evaluate(expression: str, *, max_length: int = 500, max_bits: int = 4096) -> Number:
    """The value of an arithmetic expression; ``ToolError`` if it is not one we accept."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolError("the expression is empty")
    if len(text) > max_length:
        raise ToolError(f"the expression is longer than {max_length} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a valid expression: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise ToolError("the expression is too complex")
    return _Walker(max_bits).eval(tree)


_PARAMETERS = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "e.g. '2 * (3 + 4) ** 2', 'sqrt(2) * sin(pi / 4)', 'log(100, 10)'",
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}


class CalculatorSource:
    """Provides the ``calculator`` tool."""

    def __init__(self, config: CalculatorConfig, default_timeout: float) -> None:
        self.config = config
        self.timeout = config.timeout or default_timeout

    async def start(self) -> list[Tool]:
        return [Tool(
            name="calculator",
            description=(
                "Evaluate an arithmetic expression exactly. Supports + - * / // % ** "
                "and parentheses, the constants pi, e, tau and the functions "
                + ", ".join(sorted(_FUNCTIONS)) + "."
            ),
            parameters=_PARAMETERS,
            call=self.call,
            price_usd=self.config.price_usd,
            timeout=self.timeout,
        )]

    async def call(self, arguments: dict[str, Any]) -> Any:
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            raise ToolError("'expression' must be a string")
        return evaluate(
            expression, max_length=self.config.max_length, max_bits=self.config.max_bits
        )

    async def close(self) -> None:
        return None
