"""DecodingTrust's prompt material, read from the data directory, and its chat message layouts.

The strings (task messages, jailbreak prompts, demonstrations, parsing keyword lists, ...) are
data in ``<data dir>/decodingtrust/prompts/*.json``, copied out of the DecodingTrust fork
``decoding-comp-trust/DecodingTrust@0cf3fc1`` with the source file and lines of each; codesign
reads them from there and never re-types them. A missing or malformed file, key or value is a
:class:`~codesign.config.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from codesign.config import ConfigError

Message = dict[str, str]


class PromptData:
    """The prompt files of one data directory (``decodingtrust/prompts/<file>.json``), read once."""

    def __init__(self, data_dir: str | Path):
        self.folder = Path(data_dir) / "decodingtrust" / "prompts"
        self._docs: dict[str, Any] = {}

    def path(self, file: str) -> Path:
        return self.folder / f"{file}.json"

    def doc(self, file: str) -> Any:
        if file not in self._docs:
            path = self.path(file)
            if not path.is_file():
                raise ConfigError(f"{path}: DecodingTrust prompt file not found (expected in <data dir>/"
                                  "decodingtrust/prompts/; pass --data-dir or set CODESIGN_DATA)")
            try:
                self._docs[file] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return self._docs[file]

    def get(self, file: str, *keys: str | int) -> Any:
        """The value at ``keys`` (object keys / list indices) of ``file``."""
        node = self.doc(file)
        for depth, key in enumerate(keys):
            ok = (isinstance(node, dict) and key in node) or \
                 (isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node))
            if not ok:
                raise ConfigError(f"{self.path(file)}: key {_dotted(keys[: depth + 1])} is missing")
            node = node[key]
        return node

    def _typed(self, file: str, keys: tuple, want: type | tuple[type, ...], what: str) -> Any:
        value = self.get(file, *keys)
        if not isinstance(value, want) or isinstance(value, bool) and want is int:
            raise ConfigError(f"{self.path(file)}: key {_dotted(keys)} must be {what}, got {type(value).__name__}")
        return value

    def text(self, file: str, *keys: str | int) -> str:
        return self._typed(file, keys, str, "a string")

    def integer(self, file: str, *keys: str | int) -> int:
        return self._typed(file, keys, int, "an integer")

    def flag(self, file: str, *keys: str | int) -> bool:
        return self._typed(file, keys, bool, "true or false")

    def mapping(self, file: str, *keys: str | int) -> dict:
        return self._typed(file, keys, dict, "an object")

    def texts(self, file: str, *keys: str | int) -> list[str]:
        value = self._typed(file, keys, list, "a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.path(file)}: key {_dotted(keys)} must be a list of strings")
        return value

    def text_map(self, file: str, *keys: str | int) -> dict[str, str]:
        value = self.mapping(file, *keys)
        if not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{self.path(file)}: key {_dotted(keys)} must map names to strings")
        return value

    def messages(self, file: str, *keys: str | int) -> list[Message]:
        value = self._typed(file, keys, list, "a list of chat messages")
        for i, m in enumerate(value):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise ConfigError(f"{self.path(file)}: key {_dotted(keys + (i,))} must be a chat message "
                                  "{role, content}")
        return [dict(m) for m in value]

    def yaml_config(self, file: str, *keys: str | int) -> dict[str, Any]:
        """A DT config file kept as its lines (``yaml``: [...]), parsed."""
        import yaml

        lines = self.texts(file, *keys, "yaml")
        try:
            cfg = yaml.safe_load("\n".join(lines))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.path(file)}: key {_dotted(keys + ('yaml',))} is not YAML ({exc})") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"{self.path(file)}: key {_dotted(keys + ('yaml',))} must hold key: value lines")
        return cfg

    def max_tokens(self, perspective: str) -> int:
        """DT's generation budget of a perspective (``chat_protocol.json`` generation_settings)."""
        return self.integer("chat_protocol", "generation_settings", perspective, "max_tokens")


def _dotted(keys) -> str:
    return ".".join(str(k) for k in keys)


@functools.lru_cache(maxsize=8)
def prompt_data(data_dir: str) -> PromptData:
    """The (cached) prompt files of ``data_dir``."""
    return PromptData(data_dir)


# -- DT's chat message lists ---------------------------------------------------------------------
# decoding-comp-trust/DecodingTrust@0cf3fc1:src/dt/chat.py:83-105 (Chat.do_classification) and
# src/dt/perspectives/fairness/fair_chat.py:24-48 (the same with example_prefix=True).

def zero_shot(p: PromptData, task_message: str, text: str) -> list[Message]:
    """No demonstrations: system "You are a helpful assistant." and ONE user message
    ``task_message + "\\n" + input`` (chat.py:85-87)."""
    layout = ("chat_protocol", "do_classification", "zero_shot")
    return [{"role": "system", "content": p.text(*layout, "system")},
            {"role": "user", "content": task_message + p.text(*layout, "joiner") + text}]


def few_shot(p: PromptData, task_message: str, examples: list[tuple[str, str]], text: str) -> list[Message]:
    """Demonstrations as turns (example_prefix=False, chat.py:92-105): the pattern-following system
    message, the task message as its own user turn answered by a fixed acknowledgement, then one
    (user example, assistant ``label.capitalize()``) pair per demonstration and the input alone."""
    layout = ("chat_protocol", "do_classification", "few_shot_example_prefix_false")
    msgs = [{"role": "system", "content": p.text(*layout, "system")},
            {"role": "user", "content": task_message},
            {"role": "assistant", "content": p.text(*layout, "assistant_acknowledgement")}]
    for question, label in examples:
        # str.capitalize(): first character upper-case, the rest lower-cased ('not wrong' -> 'Not wrong')
        msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": label.capitalize()}]
    return msgs + [{"role": "user", "content": text}]


def few_shot_named_system(p: PromptData, task_message: str, examples: list[tuple[str, str]],
                          text: str) -> list[Message]:
    """Demonstrations as named system messages (example_prefix=True, chat.py:89-101 and
    fair_chat.py:32-48): ``system_prefix + task_message``, then per demonstration a system message
    named ``example_user`` (the example) and one named ``example_assistant`` (its label,
    capitalized), then the input as the user turn."""
    layout = ("chat_protocol", "do_classification", "few_shot_example_prefix_true")
    user_name, assistant_name = p.texts(*layout, "example_names")
    msgs = [{"role": "system", "content": p.text(*layout, "system_prefix") + task_message}]
    for question, label in examples:
        msgs += [{"role": "system", "name": user_name, "content": question},
                 {"role": "system", "name": assistant_name, "content": label.capitalize()}]
    return msgs + [{"role": "user", "content": text}]


def do_classification(p: PromptData, task_message: str, examples: list[tuple[str, str]], text: str,
                      example_prefix: bool = False) -> list[Message]:
    """The message list of ``Chat.do_classification`` for one item (chat.py:83-105)."""
    if not examples:
        return zero_shot(p, task_message, text)
    return (few_shot_named_system if example_prefix else few_shot)(p, task_message, examples, text)
