"""Value pools and sentence templates of bioS (Allen-Zhu & Li, arXiv 2404.05405, Sec. 2.1).

No downloads: names, cities, universities and companies are pronounceable pseudo-words built
from syllables with a fixed seed, so the pools (and the vocabulary) are the same for every N.
Sizes as in the paper: 400 first x 400 middle x 1000 last names, 12 x 28 x 200 birth dates,
200 cities, 300 universities, 100 majors, 263 employers (each with an HQ city = work city).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

POOL_SEED = 2404_05405
N_FIRST, N_MIDDLE, N_LAST = 400, 400, 1000
N_CITY, N_UNIV, N_MAJOR, N_EMPLOYER = 200, 300, 100, 263
YEAR0, N_YEARS, N_DAYS = 1900, 200, 28
MONTHS = (
    "January February March April May June July August September October November December"
).split()
PRONOUNS = ("He", "She")  # gender 0, 1

ONSETS = "b br c ch d dr f fl g gr h j k kr l m n p pr r s sh st t th tr v w z".split()
VOWELS = "a e i o u ai ea io ou y".split()
CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "x"]
CITY_SUFFIXES = "Falls Springs Harbor Heights Ridge Valley Bay Park Crossing Point".split()
UNIV_PATTERNS = (
    "University of {w}",
    "{w} University",
    "{w} College",
    "{w} Institute of Technology",
    "{w} State University",
)
MAJOR_PREFIXES = (
    "Applied Computational Theoretical Environmental Molecular Industrial Medical Marine Digital "
    "Urban"
).split()
MAJOR_FIELDS = (
    "Physics Biology Chemistry Mathematics Economics Engineering Linguistics History Design "
    "Statistics Psychology Geology"
).split()
COMPANY_SUFFIXES = (
    "Systems Labs Industries Group Holdings Dynamics Networks Partners Works Technologies".split()
)

# Sentence templates, one attribute each; {s} = full name (first sentence) or pronoun,
# {v} = the value. Template 0 is the one `templates="single"` uses.
TEMPLATES = {
    "birth_date": (
        "{s} was born on {v} .",
        "{s} came into this world on {v} .",
        "{s} entered life on {v} .",
        "{s} was welcomed into the world on {v} .",
        "{s} first saw daylight on {v} .",
    ),
    "birth_city": (
        "{s} spent early years in {v} .",
        "{s} was raised in {v} .",
        "{s} grew up in {v} .",
        "{s} was born and raised in {v} .",
        "{s} has roots in {v} .",
    ),
    "university": (
        "{s} received mentorship and guidance from faculty members at {v} .",
        "{s} studied at {v} .",
        "{s} graduated from {v} .",
        "{s} attended {v} .",
        "{s} completed a degree at {v} .",
    ),
    "major": (
        "{s} completed education with a focus on {v} .",
        "{s} majored in {v} .",
        "{s} specialized in {v} .",
        "{s} pursued studies in {v} .",
        "{s} earned a degree in {v} .",
    ),
    "employer": (
        "{s} had a professional role at {v} .",
        "{s} worked for {v} .",
        "{s} was employed by {v} .",
        "{s} joined {v} .",
        "{s} took a job at {v} .",
    ),
    "work_city": (
        "{s} was employed in {v} .",
        "{s} worked in {v} .",
        "{s} built a career in {v} .",
        "{s} commuted to an office in {v} .",
        "{s} spent working years in {v} .",
    ),
}
SENTENCE_ATTRIBUTES = tuple(TEMPLATES)  # one sentence each
ATTRIBUTES = ("gender", *SENTENCE_ATTRIBUTES)  # gender = the first pronoun


@dataclass(frozen=True)
class BioSPools:
    first: tuple[str, ...]
    middle: tuple[str, ...]
    last: tuple[str, ...]
    cities: tuple[str, ...]
    universities: tuple[str, ...]
    majors: tuple[str, ...]
    employers: tuple[str, ...]
    employer_city: tuple[int, ...]  # HQ city index of each employer (the work city)

    @property
    def days(self) -> tuple[str, ...]:
        return tuple(str(d) for d in range(1, N_DAYS + 1))

    @property
    def years(self) -> tuple[str, ...]:
        return tuple(str(y) for y in range(YEAR0, YEAR0 + N_YEARS))

    def words(self) -> list[str]:
        """Every word the pools and templates use, once each, in a fixed order."""
        parts = [
            *self.first,
            *self.middle,
            *self.last,
            *PRONOUNS,
            *self.days,
            *MONTHS,
            *self.years,
            *self.cities,
            *self.universities,
            *self.majors,
            *self.employers,
            *(t for ts in TEMPLATES.values() for t in ts),
        ]
        seen: dict[str, None] = {}
        for p in parts:
            for w in p.split():
                if w not in ("{s}", "{v}"):
                    seen.setdefault(w)
        return list(seen)


def _pseudo_words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n new capitalised 2-3 syllable words (onset + vowel + optional coda), none in `taken`."""
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(
            ONSETS[rng.integers(len(ONSETS))]
            + VOWELS[rng.integers(len(VOWELS))]
            + CODAS[rng.integers(len(CODAS))]
            for _ in range(k)
        ).capitalize()
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@cache
def bios_pools() -> BioSPools:
    rng = np.random.default_rng(POOL_SEED)
    taken = {w for ts in TEMPLATES.values() for t in ts for w in t.split()}
    taken |= set(MONTHS) | set(PRONOUNS) | set(CITY_SUFFIXES) | set(MAJOR_PREFIXES)
    taken |= set(MAJOR_FIELDS) | set(COMPANY_SUFFIXES) | {"University", "College", "Institute"}
    taken |= {"of", "Technology", "State"}
    first = _pseudo_words(rng, N_FIRST, taken)
    middle = _pseudo_words(rng, N_MIDDLE, taken)
    last = _pseudo_words(rng, N_LAST, taken)
    roots = _pseudo_words(rng, N_CITY, taken)
    # half the cities get a second word: "Brantor" or "Brantor Falls"
    suffix = rng.integers(-len(CITY_SUFFIXES), len(CITY_SUFFIXES), size=N_CITY)
    cities = [r if s < 0 else f"{r} {CITY_SUFFIXES[s]}" for r, s in zip(roots, suffix, strict=True)]
    univ_words = _pseudo_words(rng, N_UNIV, taken)
    pattern = rng.integers(len(UNIV_PATTERNS), size=N_UNIV)
    universities = [UNIV_PATTERNS[p].format(w=w) for w, p in zip(univ_words, pattern, strict=True)]
    combos = [f"{a} {b}" for a in MAJOR_PREFIXES for b in MAJOR_FIELDS]
    majors = [combos[i] for i in rng.permutation(len(combos))[:N_MAJOR]]
    company_words = _pseudo_words(rng, N_EMPLOYER, taken)
    kinds = rng.integers(len(COMPANY_SUFFIXES), size=N_EMPLOYER)
    employers = [f"{w} {COMPANY_SUFFIXES[k]}" for w, k in zip(company_words, kinds, strict=True)]
    hq = rng.integers(N_CITY, size=N_EMPLOYER)
    return BioSPools(
        tuple(first),
        tuple(middle),
        tuple(last),
        tuple(cities),
        tuple(universities),
        tuple(majors),
        tuple(employers),
        tuple(int(c) for c in hq),
    )
