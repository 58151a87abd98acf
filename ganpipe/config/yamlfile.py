"""YAML as sweep and pipeline files are read: safe, and a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a second `loss:` section would silently
replace the first one; a sweep file with a repeated key is far more likely a mistake than a wish.
"""
from __future__ import annotations

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(text: str):
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: plain data only


def describe(err: yaml.YAMLError) -> str:
    """One line: where in the file, and what."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}{getattr(err, 'problem', None) or err}"
