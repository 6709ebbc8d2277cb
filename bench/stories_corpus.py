"""A labelled set of wire-style news items for the story benchmark (bench_stories.py).

There is no internet here and no public labelled set of Central Asia coverage at hand, so
this set is written, not collected: about 90 events of the kind our users follow (envoy
visits, summits, phone calls, trade and energy deals, Middle Corridor cargo, critical
minerals, economic data, the Caspian, Jackson-Vanik, earthquakes), each told by two to
eight outlets. The write-ups are hand-written templates filled with each event's facts:
different headlines and teasers per outlet, wire copies carried verbatim by several
outlets, lightly edited copies (new headline, a sentence added or cut), and Russian
reports of the same event. The traps are deliberate: the same envoy meeting the same
minister a week apart, the same envoy in two capitals two days apart, monthly statistics
that read alike with other numbers, a weekly briefing, two phone calls of one president
on one day. Real coverage is messier (longer texts, more varied wording), so the figures
are a guide to the rules' behaviour, not a promise of the same numbers on real feeds.

``corpus(seed)`` returns the items in arrival order with their true event label.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class LabelledItem:
    id: str
    event: str  # the true story
    feed: str
    title: str
    summary: str
    published: datetime


OUTLETS = [
    "https://apnews.example/rss", "https://reuters.example/world", "https://afp.example/feed",
    "https://astanatimes.example/feed", "https://kun.example/en/rss", "https://gazeta.example/en",
    "https://timesca.example/feed", "https://eurasianet.example/rss", "https://akipress.example/en",
    "https://trend.example/en/rss", "https://bne.example/rss", "https://rferl.example/rss",
    "https://interfax.example/rss", "https://kazinform.example/en", "https://24kg.example/en",
    "https://dailysabah.example/rss", "https://caliber.example/en", "https://voanews.example/rss",
]  # fmt: skip
RU_OUTLETS = ["https://tengrinews.example/rss", "https://ria.example/rss", "https://kun.example/ru/rss",
              "https://24kg.example/ru", "https://interfax.example/ru"]  # fmt: skip

LEADERS = {
    "Kazakhstan": ("Kassym-Jomart Tokayev", "Tokayev", "Astana", "Kazakh", "Токаев", "Астане"),
    "Uzbekistan": ("Shavkat Mirziyoyev", "Mirziyoyev", "Tashkent", "Uzbek", "Мирзиёев", "Ташкенте"),
    "Kyrgyzstan": ("Sadyr Japarov", "Japarov", "Bishkek", "Kyrgyz", "Жапаров", "Бишкеке"),
    "Tajikistan": ("Emomali Rahmon", "Rahmon", "Dushanbe", "Tajik", "Рахмон", "Душанбе"),
    "Turkmenistan": ("Serdar Berdimuhamedov", "Berdimuhamedov", "Ashgabat", "Turkmen",
                     "Бердымухамедов", "Ашхабаде"),
}  # fmt: skip
FMS = {
    "Kazakhstan": "Murat Nurtleu", "Uzbekistan": "Bakhtiyor Saidov", "Kyrgyzstan": "Jeenbek Kulubaev",
    "Tajikistan": "Sirojiddin Muhriddin", "Turkmenistan": "Rashid Meredov",
}  # fmt: skip
VISITORS = [
    ("Sergio Gor", "Gor", "U.S. Special Envoy for South and Central Asia", "Серджио Гор"),
    ("Christopher Landau", "Landau", "U.S. Deputy Secretary of State", "Кристофер Ландау"),
]
TOPICS = [
    "critical minerals", "the Middle Corridor", "energy security", "visa facilitation",
    "counterterrorism", "water management", "investment in digital infrastructure",
    "aviation links", "agriculture exports", "the C5+1 summit agenda",
]  # fmt: skip
COMPANIES = ["Chevron", "Boeing", "Wabtec", "John Deere", "Cisco", "Air Products", "Honeywell",
             "Caterpillar", "General Electric", "ExxonMobil", "Citi", "Visa"]  # fmt: skip
DEALS = ["locomotive supply", "aircraft purchase", "gas processing", "tungsten mining",
         "wind power", "data centre", "fertiliser plant", "payment systems"]  # fmt: skip


class _Writer:
    def __init__(self, rng: random.Random, start: datetime) -> None:
        self.rng = rng
        self.start = start
        self.items: list[LabelledItem] = []
        self.n = 0

    def event(
        self, label: str, when: datetime, versions: list[tuple[str, str]], outlets: int,
        ru: list[tuple[str, str]] | None = None,
    ) -> None:  # fmt: skip
        """``outlets`` reports of one event: each picks a write-up (title, teaser); about a
        third are wire copies of another outlet's text, some of those edited."""
        rng = self.rng
        feeds = rng.sample(OUTLETS, min(outlets, len(OUTLETS)))
        written: list[tuple[str, str]] = []
        for k, feed in enumerate(feeds):
            if written and rng.random() < 0.35:
                title, summary = rng.choice(written)
                edit = rng.random()
                if edit < 0.3:  # a new headline on the wire text
                    title = rng.choice(versions)[0]
                elif edit < 0.55:  # a sentence cut
                    summary = summary.rsplit(". ", 1)[0] + "."
                elif edit < 0.75:  # a sentence added
                    summary += rng.choice([
                        " The ministry did not give further details.",
                        " Officials said more talks would follow.",
                        " The statement was published on the government's website.",
                    ])  # fmt: skip
            else:
                title, summary = versions[k % len(versions)]
            written.append((title, summary))
            lag = timedelta(minutes=rng.randint(5, 60 * 20) if k else rng.randint(0, 30))
            self._add(label, feed, title, summary, when + lag)
        for title, summary in ru or []:
            lag = timedelta(minutes=rng.randint(10, 60 * 10))
            self._add(label, rng.choice(RU_OUTLETS), title, summary, when + lag)

    def _add(self, label: str, feed: str, title: str, summary: str, at: datetime) -> None:
        self.n += 1
        self.items.append(LabelledItem(f"i{self.n:04d}", label, feed, title, summary, at))


def _meeting(w: _Writer, label: str, when: datetime, country: str, visitor: int, topic: str,
             outlets: int, russian: bool) -> None:  # fmt: skip
    full, short, city, adj, ru_name, ru_city = LEADERS[country]
    vfull, vshort, vrole, vru = VISITORS[visitor]
    day = f"{when:%A}"
    versions = [
        (f"{short} receives US envoy {vfull} in {city}",
         f"{adj} President {full} received {vrole} {vfull} in {city} on {day}. The sides "
         f"discussed {topic} and preparations for the next C5+1 meeting."),
        (f"{adj} president meets {vshort}, discusses {topic}",
         f"{city.upper()} ({day}) - {full} held talks with {vfull}, focusing on {topic}, "
         f"the presidential press service said."),
        (f"US, {country} discuss {topic} as {vshort} visits {city}",
         f"{vrole} {vfull} arrived in {city} for talks with President {short}. {topic.capitalize()} "
         f"topped the agenda, according to the {adj} foreign ministry."),
        (f"{vshort} in {city}: talks with {short} on {topic}",
         f"During the meeting in {city}, {short} and {vshort} reviewed cooperation on {topic} "
         f"and the implementation of earlier agreements."),
    ]  # fmt: skip
    ru = None
    if russian:
        ru = [(f"{ru_name} провёл встречу с {vru}ом в {ru_city}",
               f"Президент {ru_name} провёл встречу в {ru_city} с представителем США {vru}ом. "
               f"Стороны обсудили сотрудничество и подготовку к встрече С5+1.")]  # fmt: skip
    w.event(label, when, versions, outlets, ru)


def _fm_meeting(w: _Writer, label: str, when: datetime, country: str, topic: str,
                outlets: int) -> None:  # fmt: skip
    fm = FMS[country]
    adj = LEADERS[country][3]
    versions = [
        (f"Foreign Minister {fm.split()[-1]} meets US envoy Sergio Gor",
         f"{adj} Foreign Minister {fm} met U.S. Special Envoy Sergio Gor to discuss {topic} "
         f"and the follow-up to the C5+1 summit in Washington."),
        (f"{fm} and Gor discuss {topic}",
         f"{adj} top diplomat {fm} and U.S. envoy Sergio Gor discussed {topic} in talks on "
         f"{when:%A}, the foreign ministry said."),
    ]  # fmt: skip
    w.event(label, when, versions, outlets)


def _call(w: _Writer, label: str, when: datetime, a: str, b: str, topic: str,
          outlets: int, russian: bool) -> None:  # fmt: skip
    fa, sa, _, adja, ru_a, _ = LEADERS[a]
    fb, sb, _, adjb, ru_b, _ = LEADERS[b]
    versions = [
        (f"{sa} and {sb} hold phone call on {topic}",
         f"President {fa} held a telephone conversation with {adjb} President {fb} on "
         f"{when:%A}, discussing {topic} and bilateral trade."),
        (f"{adja}, {adjb} leaders discuss {topic} by phone",
         f"{fa} and {fb} spoke by phone about {topic}, the {adja} presidential press office "
         f"reported."),
    ]  # fmt: skip
    ru = None
    if russian:
        ru = [(f"{ru_a} провёл телефонный разговор с {ru_b}ым",
               "Президенты обсудили по телефону торговлю и сотрудничество.")]  # fmt: skip
    w.event(label, when, versions, outlets, ru)


def _deal(w: _Writer, label: str, when: datetime, country: str, company: str, deal: str,
          amount: int, outlets: int) -> None:  # fmt: skip
    city, adj = LEADERS[country][2], LEADERS[country][3]
    versions = [
        (f"{company} signs ${amount} million {deal} deal in {country}",
         f"U.S. company {company} signed a ${amount} million {deal} agreement with the "
         f"{adj} government in {city}, the investment ministry said."),
        (f"{country}, {company} agree ${amount}m {deal} project",
         f"{city.upper()} - {country} and {company} agreed a {deal} project worth ${amount} "
         f"million, part of the deals announced around the C5+1 summit."),
        (f"{adj} government inks {deal} agreement with {company}",
         f"The agreement with {company}, valued at ${amount} million, covers {deal} and is "
         f"expected to create jobs in {country}, officials said."),
    ]  # fmt: skip
    w.event(label, when, versions, outlets)


def _cargo(w: _Writer, label: str, when: datetime, month: str, teu: int, pct: int,
           outlets: int) -> None:  # fmt: skip
    versions = [
        (f"Middle Corridor container traffic up {pct}% in {month}",
         f"Container shipments along the Trans-Caspian International Transport Route reached "
         f"{teu:,} TEU in {month}, up {pct}% from a year earlier, the route's association said."),
        (f"Trans-Caspian route moved {teu:,} TEU in {month}",
         f"Cargo on the Middle Corridor linking China and Europe through Kazakhstan, the "
         f"Caspian and Azerbaijan grew {pct}% year on year in {month} to {teu:,} TEU."),
    ]  # fmt: skip
    w.event(label, when, versions, outlets)


def _gdp(w: _Writer, label: str, when: datetime, country: str, period: str, pct: float,
         outlets: int) -> None:  # fmt: skip
    adj = LEADERS[country][3]
    versions = [
        (f"{country}'s economy grew {pct}% in {period}",
         f"{country}'s gross domestic product expanded {pct}% in {period}, the national "
         f"statistics bureau said, driven by construction, trade and transport."),
        (f"{adj} GDP growth at {pct}% in {period}",
         f"The {adj} economy grew {pct}% year on year in {period}, according to preliminary "
         f"data from the statistics bureau."),
    ]  # fmt: skip
    w.event(label, when, versions, outlets)


def _quake(w: _Writer, label: str, when: datetime, country: str, mag: float, place: str,
           outlets: int) -> None:  # fmt: skip
    versions = [
        (f"Magnitude {mag} earthquake strikes {place}, {country}",
         f"An earthquake of magnitude {mag} struck near {place} in {country} on {when:%A}, "
         f"seismologists said. There were no immediate reports of casualties."),
        (f"{mag} quake jolts {place}",
         f"A {mag}-magnitude earthquake hit the {place} area of {country}; emergency services "
         f"were checking buildings for damage."),
    ]  # fmt: skip
    w.event(label, when, versions, outlets)


def _briefing(w: _Writer, label: str, when: datetime, topic: str, outlets: int) -> None:
    versions = [
        (f"State Department briefing: Central Asia questions on {topic}",
         f"At the daily press briefing, the State Department spokesperson answered questions "
         f"on {topic} and U.S. engagement with the C5+1 countries."),
        (f"US spokesperson comments on {topic} in Central Asia",
         f"The State Department said on {when:%A} that it was following {topic} in Central "
         f"Asia closely, the spokesperson told reporters."),
    ]  # fmt: skip
    w.event(label, when, versions, outlets)


def _single(w: _Writer, label: str, when: datetime, title: str, summary: str) -> None:
    w.event(label, when, [(title, summary)], 1)


def corpus(seed: int = 1106) -> list[LabelledItem]:
    """The labelled items, in arrival order (by time; ties by id)."""
    rng = random.Random(seed)
    start = datetime(2025, 10, 1, 6, 0, tzinfo=UTC)
    w = _Writer(rng, start)
    countries = list(LEADERS)
    day = timedelta(days=1)
    n = 0

    def label(kind: str) -> str:
        nonlocal n
        n += 1
        return f"{kind}-{n}"

    # Envoy tours: Gor (and sometimes Landau) in two capitals two days apart, twice a
    # month; the same minister met again a week later.
    last: set[str] = set()
    for k in range(8):
        t0 = start + day * (4 * k) + timedelta(hours=rng.randint(0, 6))
        a, b = rng.sample([c for c in countries if c not in last], 2)
        last = {a, b}
        topic = rng.choice(TOPICS)
        _meeting(w, label("meet"), t0, a, 0, topic, rng.randint(3, 7), russian=k % 2 == 0)
        _meeting(w, label("meet"), t0 + 2 * day, b, rng.randint(0, 1), rng.choice(TOPICS),
                 rng.randint(3, 7), russian=k % 3 == 0)  # fmt: skip
    for k in range(6):
        country = countries[k % len(countries)]
        t0 = start + day * (5 * k + 1)
        topic = rng.choice(TOPICS)
        _fm_meeting(w, label("fm"), t0, country, topic, rng.randint(2, 4))
        _fm_meeting(w, label("fm"), t0 + 7 * day, country, topic, rng.randint(2, 4))
    for k in range(10):
        a, b = rng.sample(countries, 2)
        t0 = start + day * (3 * k) + timedelta(hours=rng.randint(1, 10))
        _call(w, label("call"), t0, a, b, rng.choice(TOPICS), rng.randint(2, 5),
              russian=k % 2 == 1)  # fmt: skip
        if k % 3 == 0:  # the same president's second call that day
            c = rng.choice([x for x in countries if x not in (a, b)])
            _call(w, label("call"), t0 + timedelta(hours=3), a, c, rng.choice(TOPICS),
                  rng.randint(2, 4), russian=False)  # fmt: skip
    for k in range(14):
        t0 = start + day * (2 * k) + timedelta(hours=rng.randint(0, 12))
        _deal(w, label("deal"), t0, rng.choice(countries), rng.choice(COMPANIES),
              rng.choice(DEALS), rng.choice([35, 120, 250, 400, 800, 1200]), rng.randint(2, 6))  # fmt: skip
    for k, month in enumerate(["June", "July", "August", "September", "October"]):
        t0 = start + day * (6 * k + 2)
        _cargo(w, label("cargo"), t0, month, rng.randint(3000, 9000), rng.randint(5, 60),
               rng.randint(2, 5))  # fmt: skip
    for k in range(10):
        country = countries[k % len(countries)]
        period = ["January-September", "the third quarter"][k // 5]
        t0 = start + day * (3 * k + 1)
        _gdp(w, label("gdp"), t0, country, period, round(rng.uniform(3.5, 8.5), 1),
             rng.randint(2, 4))  # fmt: skip
    for k in range(5):
        t0 = start + day * (6 * k + 3)
        _quake(w, label("quake"), t0, rng.choice(["Kyrgyzstan", "Tajikistan", "Kazakhstan"]),
               round(rng.uniform(4.2, 6.1), 1), rng.choice(["Osh", "Naryn", "Khujand", "Almaty", "Rasht"]),
               rng.randint(2, 5))  # fmt: skip
    for k in range(4):
        _briefing(w, label("brief"), start + day * (7 * k + 2), rng.choice(TOPICS),
                  rng.randint(2, 3))  # fmt: skip
    singles = [
        ("Caspian Sea level falls to record low", "The Caspian Sea dropped another 30 centimetres this year, Kazakh scientists said, threatening ports in Aktau."),
        ("House bill would repeal Jackson-Vanik for Kazakhstan", "A bipartisan bill introduced in the House would graduate Kazakhstan from the Jackson-Vanik amendment, granting permanent normal trade relations."),
        ("Kyrgyzstan opens new border crossing with China", "A new checkpoint on the Kyrgyz-Chinese border began operating, easing truck queues at Torugart."),
        ("Tajikistan's Rogun dam reaches new milestone", "Builders of the Rogun hydropower plant completed the second stage of the dam body, the energy ministry said."),
        ("Turkmenistan hosts Caspian economic forum", "Delegations from the Caspian states met in Avaza to discuss transport and energy links."),
        ("Uzbekistan cuts key rate to 13.5%", "The Central Bank of Uzbekistan lowered its main rate by 50 basis points, citing slowing inflation."),
        ("Almaty metro extension opens", "Two new stations on the Almaty metro opened to passengers on Saturday."),
        ("Kazakhstan plans uranium output increase", "Kazatomprom said it would raise uranium production by 12% next year."),
    ]  # fmt: skip
    for k, (title, summary) in enumerate(singles):
        _single(w, label("single"), start + day * (4 * k + 1), title, summary)
    return sorted(w.items, key=lambda i: (i.published, i.id))
