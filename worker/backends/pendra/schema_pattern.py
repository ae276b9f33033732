"""A JSON schema's ``pattern`` made ready for the grammar converter (pure).

JSON schema patterns are regular expressions; the converter (llama-cpp-python's copy of
llama.cpp's ``json_schema_to_grammar``) turns them into GBNF but copies escapes such as ``\\d``,
``\\w`` or ``\\.`` into the grammar as they are, and llama.cpp then refuses the grammar ("unknown
escape"). Everyday patterns (``^\\d{3}-\\d{4}$``, ``^[\\w.]+@[\\w.]+$``) would all fail. Here
each escape becomes a character class GBNF understands, before the converter sees the pattern;
what no grammar can express (``\\b``, back-references) is refused with a reason.
"""

from __future__ import annotations

import re

CLASS_SHORTHANDS = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\r\\x0C\\x0B"}
"""``\\d``, ``\\w``, ``\\s`` as the contents of a GBNF character class."""
NEGATED_SHORTHANDS = {"D": "d", "W": "w", "S": "s"}
CONTROL_ESCAPES = {"t": "\\t", "n": "\\n", "r": "\\r", "f": "\\x0C", "v": "\\x0B", "0": "\\x00"}
"""Control-character escapes as GBNF spells them (it knows \\t, \\n, \\r and \\xHH)."""


class PatternError(ValueError):
    """A pattern that is not a regular expression, or uses what a grammar cannot express."""


def grammar_ready(pattern: str) -> str:
    """``pattern`` checked and with every escape spelled as GBNF understands it."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PatternError(f"is not a valid regular expression ({exc})") from None
    except RecursionError:
        raise PatternError("is nested too deeply") from None
    out: list[str] = []
    in_class = False
    i, length = 0, len(pattern)
    while i < length:
        char = pattern[i]
        if char != "\\":
            if char == "[" and not in_class:
                in_class = True
            elif char == "]" and in_class:
                in_class = False
            out.append(char)
            i += 1
            continue
        escaped, i = _escape(pattern, i, in_class)
        out.append(escaped)
    return "".join(out)


def _escape(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    """The escape starting at ``pattern[at]`` (a backslash) as GBNF, and the index after it."""
    kind = pattern[at + 1]  # re.compile refused a trailing lone backslash
    after = at + 2
    if kind in "xu":
        width = 2 if kind == "x" else 4  # re.compile made sure the hex digits are there
        digits = pattern[after : after + width]
        return _in_class(f"\\{kind}{digits}", in_class), after + width
    if kind in CLASS_SHORTHANDS:
        return _in_class(CLASS_SHORTHANDS[kind], in_class), after
    if kind in NEGATED_SHORTHANDS:
        if in_class:
            raise PatternError(f"uses \\{kind} inside [...], which a grammar cannot express")
        return f"[^{CLASS_SHORTHANDS[NEGATED_SHORTHANDS[kind]]}]", after
    if kind in CONTROL_ESCAPES:
        return _in_class(CONTROL_ESCAPES[kind], in_class), after
    if kind.isalnum() or kind == "_":
        # \b and \B (word boundaries), \1 (back-references), \p{…}, \A, \Z…
        raise PatternError(f"uses \\{kind}, which a grammar cannot express")
    # An escaped punctuation mark (\. \- \/ \\ \[ …) is that character: by its code, which
    # needs no escaping of its own inside a GBNF class.
    return _in_class(_by_code(kind), in_class), after


def _by_code(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"


def _in_class(contents: str, in_class: bool) -> str:
    return contents if in_class else f"[{contents}]"


def anchored(pattern: str) -> str:
    """``pattern`` as the converter takes it, anchored at both ends. JSON schema patterns match
    anywhere in the string, so an unanchored end becomes ``.*``; the rest is grouped, so that
    an alternation (``cat|dog``) stays one alternative inside the anchors."""
    start = pattern.startswith("^")
    end = pattern.endswith("$")  # an escaped \$ is a class ([\x24]) by now
    core = pattern[1 if start else 0 : len(pattern) - 1 if end else len(pattern)]
    if start and end:
        return pattern if "|" not in core else f"^({core})$"
    return ("^" if start else "^.*") + f"({core})" + ("$" if end else ".*$")
