"""The one rule for names that become folder names (adapters, bases, exports, job ids)."""
from __future__ import annotations

import re

NAME_MAX = 64      # adapter, base and export names
JOB_ID_MAX = 100   # job ids: a timestamp, the adapter name and a counter
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # used with fullmatch: "$" would pass a final newline
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no paths)"


def is_temp_name(name: str) -> bool:
    """Folders being published (`<name>.tmp-<pid>`, `<name>.old-<pid>`), the kept previous version
    (`<name>.previous`) and hidden ones are not part of the library."""
    return ".tmp-" in name or ".old-" in name or name.endswith(".previous") or name.startswith(".")


def safe_name(name, max_len: int = NAME_MAX) -> bool:
    """A plain folder name: the charset above, at most max_len characters, no '..', not a temp name."""
    return (isinstance(name, str) and 0 < len(name) <= max_len and bool(_SAFE.fullmatch(name))
            and ".." not in name and not is_temp_name(name))


# The name the pickers give the base model itself (no adapter): no adapter may be called that.
BASE_VARIANT = "base"
_CONFUSABLE = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "5": "s", "3": "e", "4": "a", "8": "b", "6": "b",
                             "7": "t", "9": "g", "q": "g", "2": "z"})  # (9/q/2: red-team pass 35)
_CONFUSABLE_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))  # two letters that pass for one


def skeleton(name: str) -> str:
    """What a name looks like in a picker: case, the look-alike characters 0/o, 1/l/I/i, 5/s, 3/e, 4/a, 8/b,
    6/b, 7/t, 9/q/g, 2/z, the pairs rn/m, vv/w, cl/d, and the separators '.', '_', '-' folded away ('traveI', 'trave1',
    'travel_' and 'Travel' all look like 'travel'). A heuristic for the names in the pickers, not a confusables
    table (names are ASCII: artifacts.names NAME_RULE)."""
    # single characters first, then each one-letter look-alike spelled as its pair (d as cl, w as vv): pairs folded
    # first let 'cIoud' pass beside 'cloud' (pass 34), and folded left to right 'vvvx' beside 'vwx' (pass 36)
    s = re.sub(r"[._-]", "", name.casefold()).translate(_CONFUSABLE)
    for pair, one in _CONFUSABLE_PAIRS:
        s = s.replace(one, pair)
    return s
