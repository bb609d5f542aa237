"""The quarantine rules and the bands, written once as data; each engine compiles them.

A row the model must not score is held back with every reason that applies, '; '-joined, in
the order :func:`quarantine_rules` lists them. The Spark engine compiles the rules to column
expressions (:func:`yws.contract.quality.quarantine_reason`), the arrow engine to NumPy masks
(:func:`yws.scoring.arrow.reasons`); both take the wording from :meth:`Rule.reason`, so the two
engines hold back the same rows for the same reasons (the tests run the same cases on both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from yws.contract.spec import Spec

Check = Literal["null", "null_or_nan", "infinite", "unseen", "duplicate"]

REASONS: dict[str, str] = {
    "null": "{column} is null",
    "null_or_nan": "{column} is null or NaN",
    "infinite": "{column} is infinite",
    "unseen": "{column} has unseen category '{value}'",
    "duplicate": "duplicate {column} in the snapshot",
}
"""Why a row is held back, per check; ``{value}`` is the offending value."""


@dataclass(frozen=True)
class Rule:
    """One check of one column: a row fails it when ``check`` holds for its ``column``."""

    check: Check
    column: str

    def reason(self, value: str | None = None) -> str:
        return REASONS[self.check].format(column=self.column, value=value)

    def around_value(self) -> tuple[str, str]:
        """The reason's text before and after the offending value (for engines that build
        it by concatenation)."""
        before, _, after = REASONS[self.check].partition("{value}")
        return before.format(column=self.column), after.format(column=self.column)


def quarantine_rules(spec: Spec, *, unseen: bool, duplicates: bool) -> tuple[Rule, ...]:
    """The rules a row must pass, in the order its reasons are listed.

    ``unseen``: check categorical values against the fitted categories (scoring; training
    has no fitted categories yet). ``duplicates``: the snapshot has repeated entity keys, so
    the rows holding them fail.
    """
    rules = [Rule("null", spec.entity_key)]
    for f in spec.features:
        if f.kind.checks_finite:
            if f.quarantine_nulls:
                rules.append(Rule("null_or_nan", f.name))
            rules.append(Rule("infinite", f.name))
        elif f.quarantine_nulls:
            rules.append(Rule("null", f.name))
        if f.kind.categorical and f.unseen == "quarantine" and unseen:
            rules.append(Rule("unseen", f.name))
    if duplicates:
        rules.append(Rule("duplicate", spec.entity_key))
    return tuple(rules)
