"""The migration report: every setting carried over, mapped to something else, or dropped."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from opencm.errors import where


class Outcome(enum.StrEnum):
    CARRIED = "carried"  # kept as it was
    MAPPED = "mapped"  # kept, as something opencm runs instead
    DROPPED = "dropped"  # not in the kit, with the reason
    NEEDED = "needed"  # the kit cannot connect until someone supplies this


@dataclass(frozen=True)
class Item:
    outcome: Outcome
    what: str
    detail: str
    path: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value,
            "what": self.what,
            "detail": self.detail,
            "path": self.path,
            "line": self.line,
        }

    def __str__(self) -> str:
        location = where(self.path, self.line)
        suffix = f" ({location})" if location else ""
        return f"{self.outcome.value:>8}  {self.what}: {self.detail}{suffix}"


@dataclass
class Report:
    source: str
    #: What SOURCE was: "windows-profile", "cab", "iexpress", "ovpn", "wireguard", "azure-zip".
    kind: str = ""
    kit: str | None = None
    #: The link the kit connects with, and why (Azure: the choice among the flavours).
    chosen_link: str | None = None
    chosen_because: str = ""
    items: list[Item] = field(default_factory=list)

    def add(
        self,
        outcome: Outcome,
        what: str,
        detail: str,
        path: str | Path | None = None,
        line: int | None = None,
    ) -> None:
        self.items.append(Item(outcome, what, detail, str(path) if path else None, line))

    def carried(self, what: str, detail: str, path: str | Path | None = None,
                line: int | None = None) -> None:  # fmt: skip
        self.add(Outcome.CARRIED, what, detail, path, line)

    def mapped(self, what: str, detail: str, path: str | Path | None = None,
               line: int | None = None) -> None:  # fmt: skip
        self.add(Outcome.MAPPED, what, detail, path, line)

    def dropped(self, what: str, detail: str, path: str | Path | None = None,
                line: int | None = None) -> None:  # fmt: skip
        self.add(Outcome.DROPPED, what, detail, path, line)

    def needed(self, what: str, detail: str, path: str | Path | None = None,
               line: int | None = None) -> None:  # fmt: skip
        self.add(Outcome.NEEDED, what, detail, path, line)

    @property
    def complete(self) -> bool:
        """True when nothing is needed before the kit can connect."""
        return not any(item.outcome is Outcome.NEEDED for item in self.items)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind,
            "kit": self.kit,
            "link": self.chosen_link,
            "link_because": self.chosen_because,
            "complete": self.complete,
            "items": [item.to_json() for item in self.items],
        }

    def lines(self) -> list[str]:
        head = [f"Imported {self.source} ({self.kind}) into {self.kit}"]
        if self.chosen_link:
            head.append(f"Link: {self.chosen_link} ({self.chosen_because})")
        order = list(Outcome)
        body = [str(i) for i in sorted(self.items, key=lambda i: order.index(i.outcome))]
        return [*head, *body]


__all__ = ["Item", "Outcome", "Report"]
