"""The `key=value` command lines of the export scripts: required keys, options with defaults, config overrides."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence


def parse_key_values(argv: Sequence[str], description: str, required: Sequence[str] = ("ckpt_path", "output"),
                     options: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Splits `key=value` arguments into the script's own keys and the checkpoint-config overrides.

    Args:
        argv: the command line after the script name.
        description: the script's help text (`--help`).
        required: keys that must be given a non-empty value.
        options: the script's optional keys and their defaults.

    Returns:
        (the required keys and options with their values, the remaining `key=value` overrides in order).
    """
    options = dict(options or {})
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    usage = " ".join(f"{key}=..." for key in required)
    parser.add_argument("args", nargs="*", metavar="key=value", help=f"{usage} [options] [config overrides]")
    pairs = parser.parse_args(list(argv)).args
    bad = [a for a in pairs if "=" not in a]
    if bad:
        parser.error(f"arguments are key=value pairs, got {bad}")
    given = dict(a.split("=", 1) for a in pairs)
    missing = [key for key in required if not given.get(key)]
    if missing:
        parser.error(f"missing {' and '.join(k + '=...' for k in missing)}")
    own = (*required, *options)
    values = {**options, **{key: value for key, value in given.items() if key in own}}
    return values, [a for a in pairs if a.split("=", 1)[0] not in own]
