"""A config that the stage's classes do not take, as one line: the unknown key and the closest valid one first,
not jsonargparse's usage text (which ``--help`` still prints)."""

import difflib
import importlib
import inspect
import re
from argparse import ArgumentError, ArgumentParser

from experiments.cli.errors import RunError

HELP = "`python -m experiments.cli fit --help` lists every key"
CLASS_OPTION = re.compile(
    r"Parser key \"([^\"]+)\".*?Problem with given class_path '([^']+)':\s*Option '([^']+)' is not accepted", re.S
)
UNKNOWN_OPTION = re.compile(r"does not accept option '([^']+)'|unrecognized arguments: --([^\s=]+)")


class ConfigError(RunError):
    """A config (file or flag) that the stage's classes do not take; the message is one sentence."""


def option_keys(parser: ArgumentParser) -> set[str]:
    """Every ``--key`` that ``parser`` and its subcommands take, without the dashes."""
    keys = set()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            keys.update(key for sub in choices.values() if isinstance(sub, ArgumentParser) for key in option_keys(sub))
        keys.update(option.removeprefix("--") for option in action.option_strings if option.startswith("--"))
    return keys


def _class_arguments(class_path: str) -> list[str]:
    """The constructor arguments of the class at ``class_path`` (empty when it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    return [name for name in inspect.signature(cls).parameters if name not in {"self", "args", "kwargs"}]


def _unknown_key(key: str, valid: list[str]) -> str:
    """The sentence for an unknown ``key``, with the valid key whose last part is closest to its last part."""
    by_name = {}
    for candidate in valid:
        group, _, name = candidate.rpartition(".")
        if group == key.rpartition(".")[0] or not by_name.get(name):
            by_name[name] = candidate
    closest = difflib.get_close_matches(key.rpartition(".")[2], list(by_name), n=1, cutoff=0.6)
    guess = f" (did you mean {by_name[closest[0]]}?)" if closest else ""
    return f"Unknown config key {key}{guess}; {HELP}."


def _bad_value(text: str) -> str:
    """The sentence for a value that a key does not take: the key (``model.init_args.lr``) and jsonargparse's
    reason, from its nested message."""
    keys = re.findall(r'Parser key "([^"]+)"', text)
    key = f"{keys[0]}.init_args.{keys[-1]}" if len(keys) > 1 and "class_path" in text else keys[0]
    lines = [line.strip().removeprefix("- ") for line in text.splitlines()]
    last = max(number for number, line in enumerate(lines) if line.startswith("Parser key"))
    rest = lines[last].partition(":")[2].strip()
    reason = rest or next((line for line in lines[last + 1 :] if line), "")
    given = next((line for line in lines if line.startswith("Given value:")), "")
    if given and "Got value" not in reason:
        reason = f"{reason.rstrip('.')}; {given}"
    return f"Config key {key} cannot take its value ({reason.rstrip('.')}); {HELP}."


def config_error_message(error: ArgumentError, parser: ArgumentParser) -> str:
    """One sentence for a config that ``parser`` refused: an unknown key with the closest valid key, else the first
    line of jsonargparse's message."""
    text = str(error)
    found = CLASS_OPTION.search(text)
    if found:
        group, class_path, option = found.groups()
        prefix = f"{group}.init_args."
        return _unknown_key(prefix + option, [prefix + name for name in _class_arguments(class_path)])
    found = UNKNOWN_OPTION.search(text)
    if found:
        return _unknown_key(found.group(1) or found.group(2), sorted(option_keys(parser)))
    if "Parser key" in text:
        return _bad_value(text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"The config cannot be used ({first.rstrip('.')}); {HELP}."
