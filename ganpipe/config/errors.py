"""Config problems: each names the file, the dotted key and what is allowed.

The loader collects every Problem before raising one ConfigError, so a user fixes
a config in one round trip; the CLI prints `str(error)` (one line per problem) and
exits 2.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str  # the YAML path as given, or "--set" for a command-line override
    key: str  # dotted key path, e.g. "search.scheduler.grace_period"
    message: str  # what is wrong and what is allowed

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """One or more Problems; str() is one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
