"""Synthetic eCommerce events in the Kaggle REES46 file format, calibrated on the real rows.

Every file this module writes is synthetic and named so (``synthetic-events-<day>.csv[.gz]``).
``calibrate`` measures the distributions below from a real Kaggle excerpt, by default
``include/data/sample/2019-Oct-first-rows.csv``; ``generate_days`` then draws events from them.

Measured from the real rows (``calibrate``):

* the event-type mix (view, cart, remove_from_cart, purchase);
* the product catalogue: each real product with its category id, category code, brand and
  price, weighted by its number of events. Category and brand popularity, and the shares of
  empty category codes and empty brands, follow from these weights;
* events per session, sessions per user, the gaps between a session's events, the gaps between
  the starts of a user's sessions, and the share of views that return to a product already seen
  in the session;
* the share of carts followed by a purchase of the same product by the same user, and the
  delays between cart and purchase.

Assumed, because the real rows cover only three hours of one day (00:00 to 02:50 UTC, thinned
out to about 100 events a minute where the full dataset has about 950):

* the daily volume: 1.35 million events, the mean of the full October file (42.4 million rows
  over 31 days);
* the hourly curve: a cosine over the day with its peak at 15:00 UTC, an evening in Europe,
  and a peak-to-trough ratio of 4;
* the weekly curve: weekdays slightly below and weekends slightly above the mean;
* the catalogue beyond the real products: each real product has ``variants_per_product`` - 1
  synthetic siblings with the same category and brand and a new id. A sibling's price is the
  real price times a log-normal factor (sigma 0.25). Within a family, the real product and
  the low variant numbers are drawn most often (log-uniform);
* users: ids drawn from a population of 3 million, so that a user can return on another day;
* tails: no session is longer than the longest measured one, in events (31) or in time (one
  hour); a user's sessions start within the measured span; 10 % of the purchased carts are
  bought late, log-uniformly between the longest measured delay and 4 hours, so that some
  purchases fall after midnight and the next day's run has windows to close.

Output is deterministic for a seed: the same seed, day and settings give the same bytes, and a
day is the same whether it is generated alone or inside a range. The day is cut into ten-minute
blocks, each with its own random stream keyed by (seed, day, block); a block's visitors are
generated whole, and their events wait in a heap until no later block can produce an earlier
event. Memory is bounded by the events in flight (sessions and late purchases still open), not
by the day's size.
"""

from __future__ import annotations

import bisect
import csv
import functools
import gzip
import heapq
import io
import itertools
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import IO

from lakehouse.landing import EXPECTED_COLUMNS, EXPECTED_HEADER

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SAMPLE = PROJECT_ROOT / "include" / "data" / "sample" / "2019-Oct-first-rows.csv"
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
FILE_PREFIX = "synthetic-events-"

# 42.4 million rows in the full 2019-Oct.csv over 31 days.
DEFAULT_EVENTS_PER_DAY = 1_350_000
# Each 10-minute block is built in memory, about events_per_day / 144 events, so this bound
# keeps a block to about 700,000 events.
MAX_EVENTS_PER_DAY = 100_000_000
BLOCK_SECONDS = 600
BLOCKS_PER_DAY = 86_400 // BLOCK_SECONDS
# NOTE: assumed. The store's time zone is not published, and 15:00 UTC is an evening in Europe.
DEFAULT_PEAK_HOUR_UTC = 15
DEFAULT_PEAK_TO_TROUGH = 4.0
# Assumed, Monday first, and normalised to a mean of 1 when used.
DEFAULT_WEEKLY_WEIGHTS = (0.97, 0.96, 0.96, 0.98, 1.01, 1.06, 1.06)
DEFAULT_VARIANTS_PER_PRODUCT = 30
VARIANT_PRICE_SIGMA = 0.25
USER_POPULATION = 3_000_000
LATE_PURCHASE_SHARE = 0.10
LATE_PURCHASE_MAX_SECONDS = 4 * 3600
SESSION_MAX_SECONDS = 3600
# A purchase this long after its cart happens in a new session, as a return visit would.
NEW_SESSION_AFTER_SECONDS = 1800
_PRICE_FACTORS_SIZE = 4096


class CalibrationError(ValueError):
    """The real file cannot be calibrated on: missing, without header, or without events."""


@dataclass(frozen=True)
class Product:
    """A real product and the values it keeps in every event."""

    product_id: int
    category_id: str
    category_code: str
    brand: str
    price: str


@dataclass(frozen=True)
class Calibration:
    """Distributions measured from a real Kaggle excerpt, with counts as (value, count) pairs."""

    source: str
    rows: int
    event_type_counts: dict[str, int]
    products: tuple[Product, ...]
    product_events: tuple[int, ...]
    session_lengths: tuple[tuple[int, int], ...]
    sessions_per_user: tuple[tuple[int, int], ...]
    event_gaps_seconds: tuple[int, ...]
    user_session_gaps_seconds: tuple[int, ...]
    max_user_span_seconds: int
    repeat_view_share: float
    carts: int
    purchased_carts: int
    purchase_delays_seconds: tuple[int, ...]
    first_event: str
    last_event: str

    def event_type_shares(self) -> dict[str, float]:
        total = sum(self.event_type_counts.values())
        return {kind: self.event_type_counts.get(kind, 0) / total for kind in EVENT_TYPES}

    def _shares_by(self, attribute: str) -> dict[str, float]:
        counts: Counter[str] = Counter()
        for product, events in zip(self.products, self.product_events, strict=True):
            counts[getattr(product, attribute)] += events
        total = sum(counts.values())
        return {key: n / total for key, n in counts.most_common()}

    def category_shares(self) -> dict[str, float]:
        """Share of events per category code, most popular first, with ``""`` for no category."""
        return self._shares_by("category_code")

    def brand_shares(self) -> dict[str, float]:
        """Share of events per brand, most popular first, with ``""`` for no brand."""
        return self._shares_by("brand")

    @property
    def cart_conversion(self) -> float:
        return self.purchased_carts / self.carts if self.carts else 0.0

    def summary(self) -> dict[str, object]:
        categories = self.category_shares()
        brands = self.brand_shares()
        return {
            "source": self.source,
            "rows": self.rows,
            "event_type_shares": {k: round(v, 5) for k, v in self.event_type_shares().items()},
            "products": len(self.products),
            "categories": len(categories),
            "empty_category_share": round(categories.get("", 0.0), 4),
            "brands": len(brands),
            "empty_brand_share": round(brands.get("", 0.0), 4),
            "top_categories": {k: round(v, 4) for k, v in list(categories.items())[:6] if k},
            "sessions": sum(n for _, n in self.session_lengths),
            "users": sum(n for _, n in self.sessions_per_user),
            "mean_events_per_session": round(_mean(self.session_lengths), 3),
            "repeat_view_share": round(self.repeat_view_share, 4),
            "cart_conversion": round(self.cart_conversion, 4),
            "median_purchase_delay_seconds": sorted(self.purchase_delays_seconds)[
                len(self.purchase_delays_seconds) // 2
            ]
            if self.purchase_delays_seconds
            else None,
            "covers": f"{self.first_event} to {self.last_event}",
        }


def _mean(pairs: Sequence[tuple[int, int]]) -> float:
    return sum(v * n for v, n in pairs) / sum(n for _, n in pairs)


def _parse_time(text: str) -> int:
    moment = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp())


def _read_real_rows(path: Path) -> list[list[str]]:
    """Read the whole rows of a real excerpt: nine fields, a known event type, a parseable time.

    A cut-off row, like the last row of the Oct excerpt, is skipped. Exact duplicates are kept,
    because they are part of what the real data looks like.
    """
    if not path.is_file():
        raise CalibrationError(f"real events file not found: {path}")
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or ",".join(header).lstrip("\ufeff") != EXPECTED_HEADER:
            raise CalibrationError(f"{path}: expected the header {EXPECTED_HEADER!r}, found {header!r}")
        rows = []
        for row in reader:
            if len(row) != len(EXPECTED_COLUMNS) or row[1] not in EVENT_TYPES:
                continue
            try:
                _parse_time(row[0])
                int(row[2])
            except ValueError:
                continue
            rows.append(row)
    if not rows:
        raise CalibrationError(f"{path}: no whole event rows to calibrate on")
    return rows


def calibrate(path: Path | str = DEFAULT_SAMPLE) -> Calibration:
    """Measure the generator's distributions from a real Kaggle file with header.

    The result is cached per path and modification time, so repeated calls are free.
    """
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise CalibrationError(f"real events file not found: {resolved}")
    return _calibrate_cached(str(resolved), resolved.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _calibrate_cached(path: str, _mtime_ns: int) -> Calibration:
    rows = _read_real_rows(Path(path))

    product_rows: dict[int, Product] = {}
    product_events: Counter[int] = Counter()
    for row in rows:
        product_id = int(row[2])
        # A product's first row fixes its attributes. No real product changes them in the excerpt.
        product_rows.setdefault(product_id, Product(product_id, row[3], row[4], row[5], row[6]))
        product_events[product_id] += 1

    sessions: dict[str, list[tuple[int, int]]] = defaultdict(list)
    user_sessions: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        moment = _parse_time(row[0])
        sessions[row[8]].append((moment, int(row[2])))
        starts = user_sessions[row[7]]
        starts[row[8]] = min(starts.get(row[8], moment), moment)

    event_gaps: list[int] = []
    repeats = later_views = 0
    for events in sessions.values():
        events.sort()
        seen: set[int] = set()
        for index, (moment, product_id) in enumerate(events):
            if index:
                event_gaps.append(moment - events[index - 1][0])
                later_views += 1
                repeats += product_id in seen
            seen.add(product_id)

    user_gaps: list[int] = []
    max_user_span = 0
    for starts in user_sessions.values():
        ordered = sorted(starts.values())
        user_gaps.extend(b - a for a, b in itertools.pairwise(ordered))
        max_user_span = max(max_user_span, ordered[-1] - ordered[0])

    purchases: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        if row[1] == "purchase":
            purchases[(row[7], row[2])].append(_parse_time(row[0]))
    carts = purchased = 0
    delays: list[int] = []
    for row in rows:
        if row[1] != "cart":
            continue
        carts += 1
        moment = _parse_time(row[0])
        later = [t for t in purchases[(row[7], row[2])] if t >= moment]
        if later:
            purchased += 1
            delays.append(min(later) - moment)

    products = tuple(product_rows[p] for p in sorted(product_rows))
    times = sorted(row[0] for row in rows)
    return Calibration(
        source=path,
        rows=len(rows),
        event_type_counts=dict(Counter(row[1] for row in rows)),
        products=products,
        product_events=tuple(product_events[p.product_id] for p in products),
        session_lengths=tuple(sorted(Counter(len(e) for e in sessions.values()).items())),
        sessions_per_user=tuple(sorted(Counter(len(s) for s in user_sessions.values()).items())),
        event_gaps_seconds=tuple(sorted(event_gaps)) or (0,),
        user_session_gaps_seconds=tuple(sorted(user_gaps)) or (0,),
        max_user_span_seconds=max_user_span,
        repeat_view_share=repeats / later_views if later_views else 0.0,
        carts=carts,
        purchased_carts=purchased,
        purchase_delays_seconds=tuple(sorted(delays)),
        first_event=times[0],
        last_event=times[-1],
    )


@dataclass(frozen=True)
class GeneratorSettings:
    """What to generate on top of the calibration: volume, curves, seed and injected quirks.

    :param events_per_day: mean events of a day over a week. A day gets this volume times its
        weekly weight, spread over the hours by the hourly curve. The count is approximate
        (within a few percent), because whole visitors are generated.
    :param duplicate_rate: share of rows written twice, as exact duplicates.
    :param cut_last_row: end each file with a cut-off row (its last field and newline missing).
    :param line_ending: ``"\\n"`` or ``"\\r\\n"`` (the shipped excerpt uses CRLF).
    """

    seed: int = 0
    events_per_day: int = DEFAULT_EVENTS_PER_DAY
    peak_hour_utc: int = DEFAULT_PEAK_HOUR_UTC
    peak_to_trough: float = DEFAULT_PEAK_TO_TROUGH
    weekly_weights: tuple[float, ...] = DEFAULT_WEEKLY_WEIGHTS
    variants_per_product: int = DEFAULT_VARIANTS_PER_PRODUCT
    duplicate_rate: float = 0.0
    cut_last_row: bool = False
    line_ending: str = "\n"
    compress: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.events_per_day <= MAX_EVENTS_PER_DAY:
            raise ValueError(
                f"invalid events_per_day {self.events_per_day}: expected 1 to {MAX_EVENTS_PER_DAY:,}"
            )
        if not 0 <= self.peak_hour_utc <= 23:
            raise ValueError(f"invalid peak_hour_utc {self.peak_hour_utc}: expected 0 to 23")
        if not self.peak_to_trough >= 1:
            raise ValueError(f"invalid peak_to_trough {self.peak_to_trough}: expected a ratio >= 1")
        if len(self.weekly_weights) != 7 or min(self.weekly_weights) <= 0:
            raise ValueError(
                f"invalid weekly_weights {self.weekly_weights}: expected 7 positive weights, Monday first"
            )
        if self.variants_per_product < 1:
            raise ValueError(f"invalid variants_per_product {self.variants_per_product}: expected >= 1")
        if not 0 <= self.duplicate_rate < 1:
            raise ValueError(f"invalid duplicate_rate {self.duplicate_rate}: expected 0 <= rate < 1")
        if self.line_ending not in ("\n", "\r\n"):
            raise ValueError(f"invalid line_ending {self.line_ending!r}: expected '\\n' or '\\r\\n'")

    def hourly_weights(self) -> tuple[float, ...]:
        """Relative traffic of each UTC hour, mean 1, peak over trough = ``peak_to_trough``."""
        amplitude = (self.peak_to_trough - 1) / (self.peak_to_trough + 1)
        return tuple(
            1 + amplitude * math.cos(2 * math.pi * (hour - self.peak_hour_utc) / 24) for hour in range(24)
        )

    def day_volume(self, day: date) -> float:
        """Expected events of a day: the mean volume times the day's normalised weekly weight."""
        mean = sum(self.weekly_weights) / 7
        return self.events_per_day * self.weekly_weights[day.weekday()] / mean

    def file_name(self, day: date) -> str:
        return f"{FILE_PREFIX}{day.isoformat()}.csv" + (".gz" if self.compress else "")


def _sampler(pairs: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    values = [v for v, _ in pairs]
    cumulative = []
    total = 0
    for _, n in pairs:
        total += n
        cumulative.append(total)
    return values, cumulative


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


class _Model:
    """The calibration turned into fast samplers, shared by every block of a run."""

    def __init__(self, calibration: Calibration, settings: GeneratorSettings) -> None:
        self.calibration = calibration
        self.settings = settings
        self.products = calibration.products
        self.product_cumulative = list(_cumulative(calibration.product_events))
        self.session_lengths, self.session_length_cumulative = _sampler(calibration.session_lengths)
        self.user_sessions, self.user_sessions_cumulative = _sampler(calibration.sessions_per_user)
        self.event_gaps = calibration.event_gaps_seconds
        self.user_gaps = calibration.user_session_gaps_seconds
        self.delays = calibration.purchase_delays_seconds or (60,)
        self.max_user_span = calibration.max_user_span_seconds
        self.repeat_view_share = calibration.repeat_view_share
        self.conversion = calibration.cart_conversion
        self.late_min = max(self.delays[-1], 1)
        self.variants = settings.variants_per_product
        self.variant_log = math.log(self.variants + 1)
        # Real ids stay as they are, and synthetic siblings get ids above the largest real one.
        largest = max(p.product_id for p in self.products)
        self.variant_id_base = 10 ** len(str(largest))
        self.real_fragments = [
            f"{p.product_id},{p.category_id},{p.category_code},{p.brand},{p.price}" for p in self.products
        ]
        normal = NormalDist(0.0, VARIANT_PRICE_SIGMA)
        self.price_factors = [
            math.exp(normal.inv_cdf((i + 0.5) / _PRICE_FACTORS_SIZE)) for i in range(_PRICE_FACTORS_SIZE)
        ]
        self.slot_cumulative = self._slot_mix()
        self.hourly = settings.hourly_weights()
        self.span = BLOCK_SECONDS + self.max_user_span + SESSION_MAX_SECONDS + LATE_PURCHASE_MAX_SECONDS
        self.lookback_blocks = math.ceil(self.span / BLOCK_SECONDS)
        self.events_per_visitor = self._measure_events_per_visitor()

    def _measure_events_per_visitor(self, visitors: int = 20_000) -> float:
        """Measure the mean events of a visitor on a fixed stream, caps and purchases included."""
        probe = _Block(self, date(2000, 1, 1), 0, 0, 0)
        probe.rng = random.Random("events-per-visitor")
        events = 0
        for _ in range(visitors):
            probe._visitor()
            events += len(probe.events)
            probe.events.clear()
        return events / visitors

    def _slot_mix(self) -> list[float]:
        """Per-slot probabilities of view, cart, remove_from_cart and purchase.

        A cart that converts adds a purchase event, so the slot mix is solved for the measured
        mix of events. With cart share c, conversion k and purchase share p, carts per slot are
        c_slot = c / (1 - c k), and direct purchases per slot are p (1 + c_slot k) - c_slot k.
        """
        shares = self.calibration.event_type_shares()
        conversion = self.conversion
        cart = shares["cart"] / (1 - shares["cart"] * conversion)
        growth = 1 + cart * conversion
        purchase = max(0.0, shares["purchase"] * growth - cart * conversion)
        remove = shares["remove_from_cart"] * growth
        view = max(0.0, 1 - cart - purchase - remove)
        total = view + cart + remove + purchase
        return list(_cumulative([view / total, cart / total, remove / total, purchase / total]))

    def product_fragment(self, rng: random.Random) -> str:
        """Draw a product by popularity and return its five CSV fields, the same for every draw."""
        index = bisect.bisect_right(self.product_cumulative, rng.random() * self.product_cumulative[-1])
        variant = int(math.exp(rng.random() * self.variant_log)) - 1
        if variant <= 0:
            return self.real_fragments[index]
        product = self.products[index]
        # The sibling's price depends only on (seed, product, variant), so it never changes.
        key = (self.settings.seed << 40) ^ (index << 12) ^ variant
        factor = self.price_factors[_splitmix64(key) % _PRICE_FACTORS_SIZE]
        price = round(float(product.price) * factor, 2)
        product_id = self.variant_id_base + index * self.variants + variant
        return f"{product_id},{product.category_id},{product.category_code},{product.brand},{price:.2f}"

    def block_budget(self, day: date, block: int) -> float:
        hour = block * BLOCK_SECONDS // 3600
        return self.settings.day_volume(day) * self.hourly[hour] / BLOCKS_PER_DAY


def _cumulative(weights: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def _session_id(rng: random.Random) -> str:
    bits = rng.getrandbits(128)
    text = f"{bits:032x}"
    # Version 4 and variant bits, as the real uuid4 session ids have.
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{'89ab'[bits & 3]}{text[17:20]}-{text[20:32]}"


@dataclass
class _Block:
    """One ten-minute block: its random stream and the ordering key of its events."""

    model: _Model
    day: date
    index: int
    start: int
    order_base: int
    rng: random.Random = field(init=False)
    events: list[tuple[int, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A string seed is hashed with SHA-512 by random.Random, the same on every platform.
        self.rng = random.Random(f"{self.model.settings.seed}:{self.day.isoformat()}:{self.index}")

    def emit(self, moment: int, tail: str) -> None:
        self.events.append((moment, self.order_base + len(self.events), tail))

    def generate(self) -> list[tuple[int, int, str]]:
        # Whole visitors only: the fraction decides one more visitor at random, so that the
        # expected events of the block match its budget even when the budget is a few events.
        visitors = self.model.block_budget(self.day, self.index) / self.model.events_per_visitor
        count = int(visitors) + (self.rng.random() < visitors - int(visitors))
        for _ in range(count):
            self._visitor()
        return self.events

    def _visitor(self) -> None:
        model, rng = self.model, self.rng
        user_id = 500_000_000 + int(rng.random() * USER_POPULATION)
        draw = rng.random() * model.user_sessions_cumulative[-1]
        sessions = model.user_sessions[bisect.bisect_right(model.user_sessions_cumulative, draw)]
        first = start = self.start + int(rng.random() * BLOCK_SECONDS)
        for number in range(sessions):
            if number:
                start += max(1, model.user_gaps[int(rng.random() * len(model.user_gaps))])
                if start - first > model.max_user_span:
                    break
            self._session(user_id, start)

    def _session(self, user_id: int, start: int) -> None:
        model, rng = self.model, self.rng
        session = _session_id(rng)
        draw = rng.random() * model.session_length_cumulative[-1]
        length = model.session_lengths[bisect.bisect_right(model.session_length_cumulative, draw)]
        moment = start
        seen: list[str] = []
        for slot in range(length):
            if slot:
                moment += model.event_gaps[int(rng.random() * len(model.event_gaps))]
                if moment - start > SESSION_MAX_SECONDS:
                    break
            kind = EVENT_TYPES[
                bisect.bisect_right(model.slot_cumulative, rng.random() * model.slot_cumulative[-1])
            ]
            if kind == "view":
                if seen and rng.random() < model.repeat_view_share:
                    product = seen[int(rng.random() * len(seen))]
                else:
                    product = model.product_fragment(rng)
                seen.append(product)
            else:
                # Carts, removals and purchases concern the product the visitor last looked at.
                product = seen[-1] if seen else model.product_fragment(rng)
            self.emit(moment, f"{kind},{product},{user_id},{session}")
            if kind == "cart" and rng.random() < model.conversion:
                self._purchase_after_cart(moment, product, user_id, session)

    def _purchase_after_cart(self, cart_time: int, product: str, user_id: int, session: str) -> None:
        model, rng = self.model, self.rng
        if rng.random() < LATE_PURCHASE_SHARE:
            delay = int(math.exp(rng.uniform(math.log(model.late_min), math.log(LATE_PURCHASE_MAX_SECONDS))))
        else:
            delay = model.delays[int(rng.random() * len(model.delays))]
        if delay > NEW_SESSION_AFTER_SECONDS:
            session = _session_id(rng)
        self.emit(cart_time + delay, f"purchase,{product},{user_id},{session}")


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _events_sorted(model: _Model, first_day: date, last_day: date) -> Iterator[tuple[int, str]]:
    """Yield (epoch second, line tail) of the events dated first_day..last_day, sorted by time.

    Blocks start ``lookback_blocks`` before first_day, so that sessions and late purchases begun
    the evening before are part of first_day exactly as when the previous day is generated too.
    """
    begin = _epoch(first_day)
    end = _epoch(last_day) + 86_400
    pending: list[tuple[int, int, str]] = []
    block_start = begin - model.lookback_blocks * BLOCK_SECONDS
    while block_start < end:
        block_day = datetime.fromtimestamp(block_start, UTC).date()
        index = (block_start - _epoch(block_day)) // BLOCK_SECONDS
        order_base = (block_day.toordinal() * BLOCKS_PER_DAY + index) << 32
        block = _Block(model, block_day, index, block_start, order_base)
        for event in block.generate():
            if begin <= event[0] < end:
                heapq.heappush(pending, event)
        block_start += BLOCK_SECONDS
        # No later block starts a visitor before block_start, so earlier events are final.
        while pending and pending[0][0] < block_start:
            moment, _order, tail = heapq.heappop(pending)
            yield moment, tail
    while pending:
        moment, _order, tail = heapq.heappop(pending)
        yield moment, tail


@dataclass
class DayReport:
    """One written file: its day, path, rows (duplicates included) and injected quirks."""

    day: date
    path: Path
    rows: int = 0
    duplicates: int = 0
    cut_last_row: bool = False
    counts: Counter[str] = field(default_factory=Counter)


class _DayWriter:
    """Write one day's rows to a hidden partial file, renamed into place on close."""

    def __init__(self, path: Path, day: date, settings: GeneratorSettings) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.settings = settings
        self.day_text = day.isoformat()
        self.report = DayReport(day=day, path=path)
        self.quirks = random.Random(f"{settings.seed}:{self.day_text}:quirks")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = self.partial.open("wb")
        # mtime=0 and no file name in the gzip header, so the same seed gives the same bytes.
        self._stream: IO[bytes] = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
            if settings.compress
            else self._raw
        )
        self._text = io.TextIOWrapper(self._stream, encoding="utf-8", newline="", write_through=False)
        self._buffer: list[str] = [EXPECTED_HEADER]
        self._last: str | None = None

    def add(self, moment: int, tail: str) -> None:
        seconds = moment % 86_400
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        line = f"{self.day_text} {hours:02d}:{minutes:02d}:{secs:02d} UTC,{tail}"
        if self._last is not None:
            self._buffer.append(self._last)
            if len(self._buffer) >= 8192:
                self._flush()
        self._last = line
        self.report.rows += 1
        self.report.counts[tail.split(",", 1)[0]] += 1
        if self.settings.duplicate_rate and self.quirks.random() < self.settings.duplicate_rate:
            self._buffer.append(line)
            self.report.rows += 1
            self.report.duplicates += 1

    def _flush(self) -> None:
        ending = self.settings.line_ending
        self._text.write(ending.join(self._buffer) + ending)
        self._buffer = []

    def close(self) -> DayReport:
        ending = self.settings.line_ending
        if self._last is not None:
            if self.settings.cut_last_row:
                # Like the real Oct excerpt: the last field and the final newline are missing.
                self._buffer.append(self._last.rsplit(",", 1)[0])
                self._text.write(ending.join(self._buffer))
                self.report.cut_last_row = True
            else:
                self._buffer.append(self._last)
                self._flush()
        elif self._buffer:
            self._flush()
        self._text.flush()
        self._text.detach()
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()
        os.replace(self.partial, self.path)
        return self.report

    def discard(self) -> None:
        self._raw.close()
        self.partial.unlink(missing_ok=True)


def landing_file_path(lake_root: Path, day: date, settings: GeneratorSettings) -> Path:
    """Return where a synthetic day lands in a local lake, as ``land_file`` would put it."""
    return lake_root / "landing" / "events" / f"event_date={day.isoformat()}" / settings.file_name(day)


def generate_days(
    first_day: date,
    last_day: date,
    settings: GeneratorSettings,
    *,
    lake_root: Path | None = None,
    output_dir: Path | None = None,
    calibration: Calibration | None = None,
) -> list[DayReport]:
    """Write one synthetic file per day from first_day to last_day, streamed, sorted by time.

    Exactly one of ``lake_root`` (files go to the landing zone, one folder per event date) and
    ``output_dir`` (all files in one folder) must be given.
    """
    if (lake_root is None) == (output_dir is None):
        raise ValueError("expected exactly one of lake_root and output_dir")
    if last_day < first_day:
        raise ValueError(f"invalid date range {first_day}..{last_day}: the last day is before the first")
    model = _Model(calibration or calibrate(), settings)

    def path_of(day: date) -> Path:
        if lake_root is not None:
            return landing_file_path(lake_root, day, settings)
        return output_dir / settings.file_name(day)

    reports: list[DayReport] = []
    writer: _DayWriter | None = None
    writer_day = -1
    try:
        for moment, tail in _events_sorted(model, first_day, last_day):
            if moment // 86_400 != writer_day:
                if writer is not None:
                    reports.append(writer.close())
                writer_day = moment // 86_400
                day = datetime.fromtimestamp(writer_day * 86_400, UTC).date()
                writer = _DayWriter(path_of(day), day, settings)
            writer.add(moment, tail)
        if writer is not None:
            reports.append(writer.close())
            writer = None
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return reports


def iter_day_rows(
    day: date, settings: GeneratorSettings, calibration: Calibration | None = None
) -> Iterator[str]:
    """Yield the day's data rows as CSV lines without line endings, for callers that stream."""
    model = _Model(calibration or calibrate(), settings)
    day_text = day.isoformat()
    for moment, tail in _events_sorted(model, day, day):
        hours, rest = divmod(moment % 86_400, 3600)
        minutes, secs = divmod(rest, 60)
        yield f"{day_text} {hours:02d}:{minutes:02d}:{secs:02d} UTC,{tail}"


def days_between(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
