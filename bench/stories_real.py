"""A labelled set of real news reports for the story benchmark (bench_stories.py).

``bench/data/stories_real.jsonl`` holds 254 items in 98 stories, each item written from one
real published report: the template set of stories_corpus.py is generated, and a method
tuned there can look better than it is on coverage nobody wrote to fit it. Its test half
(``half``) is held out: thresholds were tuned on the dev half only, never on the test half.

How it was built. Public news pages were looked up by topic (the C5+1 summit in Washington
of 6 November 2025 and its invitation, deals and aftermath; Sergio Gor's and Christopher
Landau's visits to Tashkent, Almaty and Astana in October 2025 and Gor's return to Bishkek
and Tashkent in February 2026; US-Uzbek phone calls and meetings; critical-minerals
memoranda of 2024, 2025 and 2026; Kazakhstan and the Abraham Accords; the Kazakh nuclear
plant referendum and the choice of Rosatom; the Kyrgyz-Tajik border treaty and the Khujand
summit; the AZAL crash near Aktau and its investigation; attacks on the Caspian Pipeline
Consortium and on Chinese workers on the Tajik-Afghan border; the Middle Corridor;
Jackson-Vanik; TAPI and Turkmen energy forums; the Central Asian consultative meeting in
Tashkent) and, as distractors, world news of the same weeks (the Louvre robbery, the New
York mayoral election). For each report found, one item records the outlet's real address
(``source``), its date as published, and a headline and a one-to-three-sentence lead
written anew, in the report's language, from that report alone: its own facts, names,
numbers and angle. Wording was not copied and was not harmonised across the reports of one
event; two items carry the same text only where the same report is published under two
addresses (a real exact copy). Russian reports are written in Russian; a few reports in
other languages (German, Turkish, Romanian, ...) are kept in theirs, as a monitor meets
them. A page whose language could not be written well (Kazakh, Kyrgyz, Uzbek Cyrillic,
Pashto, ...) was left out.

Times. ``published`` is the report's own date and, when the page gave it, its time (UTC).
A date alone means the time was not shown; the loader puts such items at 12:00 UTC. Items
marked ``"approx": true`` carry a date read from the report's text or context (for example
"on Thursday" beside a known event, or the dates of the event it reports) rather than
printed on the page: within a day or two for reports near other stories' dates, and only
to the week for a few old ones that stand alone (far from every other story in time). A
report whose date could not be placed so was left out.

Labelling rules (one event = one story), decided by reading each report's lead:
- A report belongs to the happening its lead reports as news.
- An announcement (an invitation, a schedule, a planned visit, "X will meet Y") and the event
  it announces are different stories. Coverage published on the eve or the day of an event
  about the event itself (what to expect, "today in the Oval Office", a factbox) belongs to
  the event.
- An event's own unfolding over its first two days is one story: tolls, rescue, the
  investigators' first briefings, the first reactions carried in the same reports.
  Commentary and analysis within a few days of one event belong to it; a retrospective weeks
  later, or one covering several events, is its own story.
- A statement issued on a later day that is itself what a report is about (a ministry
  confirming or condemning, a president's apology, a social-media recap the next day, a
  ratification, a follow-up call or visit) is its own story, even when it recaps the event.
- Meetings of the same people on different days are different stories (Mirziyoyev received
  Gor in Tashkent on 27 October, Tokayev received him in Astana on 29 October, Japarov in
  Bishkek on 4 February; the Mirziyoyev-Trump call of 5 September, their meeting in New York
  on 23 September and the White House summit are three stories).
- Several arrivals, bilateral meetings and signings on one summit day are separate stories
  when a report leads with one of them (the Kazakh-US minerals memorandum, the Uzbek trade
  deal, the Abraham Accords announcement), and the summit story holds the reports that
  lead with the summit itself.

``load()`` returns the items in arrival order (by time; ties by source address) as
``stories_corpus.LabelledItem``: ``id`` is the report's address, ``feed`` the outlet's site,
``event`` the story label. ``half(items, "dev" | "test")`` keeps the stories of one half of
the set, split by a hash of the story label (CRC-32, even: dev, odd: test; about 130 and 124
items, 48 and 50 stories): rules and thresholds are tuned on the dev half and judged on the
test half, which tuning does not look at.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from stories_corpus import LabelledItem

DATA = Path(__file__).resolve().parent / "data" / "stories_real.jsonl"
KEYS = {"event", "source", "published", "approx", "lang", "title", "summary"}


@dataclass(frozen=True, slots=True)
class Report:
    """One line of the data file."""

    event: str
    source: str
    published: datetime
    approx: bool
    lang: str
    title: str
    summary: str


def _when(text: str) -> datetime:
    if len(text) == 10:  # a date alone: the page gave no time
        return datetime.fromisoformat(text).replace(hour=12, tzinfo=UTC)
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"{text}: a time needs its offset")
    return at.astimezone(UTC)


def reports(path: Path = DATA) -> list[Report]:
    """Every report of the file, in arrival order (by time; ties by source address)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            unknown = set(row) - KEYS
            if unknown:
                raise ValueError(f"{path.name}:{n}: unknown keys {sorted(unknown)}")
            out.append(
                Report(
                    event=row["event"], source=row["source"], published=_when(row["published"]),
                    approx=bool(row.get("approx", False)), lang=row["lang"],
                    title=row["title"], summary=row["summary"],
                )
            )  # fmt: skip
    out.sort(key=lambda r: (r.published, r.source))
    return out


def outlet(source: str) -> str:
    """The outlet's site for a report's address: its feed, as far as the benchmark cares."""
    host = urlsplit(source).hostname or ""
    return f"https://{host.rstrip('.')}/"


def load(path: Path = DATA) -> list[LabelledItem]:
    """The labelled items in arrival order, in the shape of the template set."""
    return [
        LabelledItem(r.source, r.event, outlet(r.source), r.title, r.summary, r.published)
        for r in reports(path)
    ]


HALVES = ("dev", "test", "all")


def half(items: list[LabelledItem], which: str) -> list[LabelledItem]:
    """The items of the stories in one half of the set (``HALVES``; "all": every item),
    split by story, never inside one: a hash of the label, so a story keeps its half when
    items are added."""
    if which == "all":
        return items
    if which not in HALVES:
        raise ValueError(f"half: {which!r} is not one of {HALVES}")
    parity = 0 if which == "dev" else 1
    return [it for it in items if zlib.crc32(it.event.encode()) % 2 == parity]
