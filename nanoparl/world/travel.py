"""The travel tool (BFCL's TravelAPI, simplified): credit cards, flight costs, bookings, insurance.
"Insure that booking with the same card" needs the booking id a tool returned turns earlier.
Conventions: base.py.
"""

import datetime
import zlib

from nanoparl.world.base import (API, PEOPLE, Domain, distinct_ids, err, login_required,
                                 pick_target, too_many)

# ----------------------------------------------------------------------------
# The tool. State: `authenticated`, `credit_cards` (card_id -> card), `bookings` (booking_id ->
# booking). Airports and prices are fixed tables, not state.

AIRPORTS = {
    "Boston": "BOS", "Paris": "CDG", "London": "LHR", "Tokyo": "HND", "New York": "JFK",
    "Chicago": "ORD", "Berlin": "BER", "Madrid": "MAD", "Rome": "FCO", "Sydney": "SYD",
    "Toronto": "YYZ", "Seattle": "SEA", "Denver": "DEN", "Dubai": "DXB", "Singapore": "SIN",
    "Amsterdam": "AMS", "Lisbon": "LIS", "Vienna": "VIE", "Oslo": "OSL", "Dublin": "DUB",
    "Miami": "MIA", "Atlanta": "ATL", "Seoul": "ICN", "Mumbai": "BOM",
}
CLASS_FACTOR = {"economy": 1.0, "business": 2.5, "first": 4.0}
INSURANCE_COST = {"basic": 30.0, "comprehensive": 80.0}


def flight_cost(travel_from, travel_to, travel_class):
    """Deterministic price: crc32, not hash(), which is randomised per process."""
    base = 100 + zlib.crc32(f"{travel_from}-{travel_to}".encode()) % 700
    return float(round(base * CLASS_FACTOR[travel_class]))


def _bad_date(text):
    try:
        datetime.date.fromisoformat(text)
        return None if len(text) == 10 else err(f"invalid date {text!r}, use YYYY-MM-DD")
    except ValueError:
        return err(f"invalid date {text!r}, use YYYY-MM-DD")


class TravelAPI(API):
    """Flight booking with stored credit cards."""

    _defaults = {"authenticated": False, "credit_cards": {}, "bookings": {}}
    _read_only = ("get_nearest_airport_by_city", "get_flight_cost", "retrieve_invoice")

    def _check_trip(self, travel_from, travel_to, travel_date, travel_class):
        codes = set(AIRPORTS.values())
        if travel_from not in codes or travel_to not in codes:
            return err("unknown airport code")
        if travel_from == travel_to:
            return err("origin and destination are the same")
        if travel_class not in CLASS_FACTOR:
            return err("travel_class must be 'economy', 'business' or 'first'")
        return _bad_date(travel_date)

    def _booking(self, booking_id):
        error = login_required(self.authenticated, "the travel service")
        if error:
            return None, error
        if booking_id not in self.bookings:
            return None, err(f"no booking with id {booking_id}")
        return self.bookings[booking_id], None

    def authenticate_travel(self, client_id: str, client_secret: str):
        """Log in to the travel service."""
        if not client_id or not client_secret:
            return err("client_id and client_secret are required")
        self.authenticated = True
        return {"status": "authenticated"}

    def get_nearest_airport_by_city(self, location: str):
        """The airport code for a city."""
        if location not in AIRPORTS:
            return err(f"no airport known for {location!r}")
        return {"nearest_airport": AIRPORTS[location]}

    def get_flight_cost(self, travel_from: str, travel_to: str, travel_date: str,
                        travel_class: str):
        """Price of a flight between two airport codes."""
        error = self._check_trip(travel_from, travel_to, travel_date, travel_class)
        return error or {"travel_cost": flight_cost(travel_from, travel_to, travel_class)}

    def register_credit_card(self, card_number: str, expiration_date: str, cardholder_name: str,
                             card_verification_number: int):
        """Store a credit card (expiration MM/YYYY); returns its card_id."""
        error = (login_required(self.authenticated, "the travel service")
                 or too_many(self.credit_cards, "credit cards"))
        if error:
            return error
        if len(card_number) != 16 or not card_number.isdigit():
            return err("card_number must have 16 digits")
        if len(expiration_date) != 7 or expiration_date[2] != "/":
            return err("expiration_date must be MM/YYYY")
        if not 100 <= card_verification_number <= 999:
            return err("card_verification_number must have 3 digits")
        card_id = str(self._new_id({int(c) for c in self.credit_cards}))
        self.credit_cards[card_id] = {"cardholder_name": cardholder_name,
                                      "last_digits": card_number[-4:], "balance": 5000.0}
        return {"card_id": card_id}

    def book_flight(self, card_id: str, travel_date: str, travel_from: str, travel_to: str,
                    travel_class: str):
        """Book a flight paid with a stored card; returns the booking_id."""
        error = (login_required(self.authenticated, "the travel service")
                 or self._check_trip(travel_from, travel_to, travel_date, travel_class)
                 or too_many(self.bookings, "bookings"))
        if error:
            return error
        if card_id not in self.credit_cards:
            return err(f"no card with id {card_id}")
        card, cost = self.credit_cards[card_id], flight_cost(travel_from, travel_to, travel_class)
        if cost > card["balance"]:
            return err("insufficient card balance")
        card["balance"] = round(card["balance"] - cost, 2)
        booking_id = str(self._new_id({int(b) for b in self.bookings}))
        self.bookings[booking_id] = {"card_id": card_id, "travel_from": travel_from,
                                     "travel_to": travel_to, "travel_date": travel_date,
                                     "travel_class": travel_class, "travel_cost": cost,
                                     "insurance": None}
        return {"booking_id": booking_id, "travel_cost": cost}

    def cancel_booking(self, booking_id: str):
        """Cancel a booking; the card is refunded."""
        booking, error = self._booking(booking_id)
        if error:
            return error
        refund = booking["travel_cost"] + INSURANCE_COST.get(booking["insurance"], 0.0)
        card = self.credit_cards.get(booking["card_id"])
        if card is not None:
            card["balance"] = round(card["balance"] + refund, 2)
        del self.bookings[booking_id]
        return {"cancel_status": True}

    def purchase_insurance(self, booking_id: str, insurance_type: str, card_id: str):
        """Insure a booking: 'basic' (30) or 'comprehensive' (80)."""
        booking, error = self._booking(booking_id)
        if error:
            return error
        if insurance_type not in INSURANCE_COST:
            return err("insurance_type must be 'basic' or 'comprehensive'")
        if booking["insurance"] is not None:
            return err(f"booking {booking_id} is already insured")
        if card_id not in self.credit_cards:
            return err(f"no card with id {card_id}")
        card, cost = self.credit_cards[card_id], INSURANCE_COST[insurance_type]
        if cost > card["balance"]:
            return err("insufficient card balance")
        card["balance"] = round(card["balance"] - cost, 2)
        booking["insurance"] = insurance_type
        return {"insurance_type": insurance_type, "insurance_cost": cost}

    def retrieve_invoice(self, booking_id: str):
        """The invoice of a booking."""
        booking, error = self._booking(booking_id)
        if error:
            return error
        return {"invoice": {"booking_id": booking_id,
                            **{k: v for k, v in booking.items() if k != "card_id"}}}


# ----------------------------------------------------------------------------
# Entity pools: every 4th value only appears in test

CITIES = list(AIRPORTS)
CLIENTS = ["trip-desk", "fly-mate", "jet-set", "sky-hop", "go-away", "wander", "tour-pro",
           "voyager"]
SECRETS = ["k9x2", "zq71", "m4p8", "r2d5", "t7w3", "b6n1", "h8c4", "y3f9"]
SURNAMES = ["Lee", "Ortiz", "Park", "Wu", "Stone", "Reid", "Moss", "Lane"]


# ----------------------------------------------------------------------------
# Intents

def _article(travel_class):
    return ("an " if travel_class == "economy" else "a ") + travel_class


def _date(c):
    return f"2025-{c.rng.randint(1, 12):02d}-{c.rng.randint(1, 28):02d}"


def travel_config(c):
    c.mem["travel_login"] = (c.pick(CLIENTS), c.pick(SECRETS))
    card = str(c.rng.randint(1000, 9999))
    cards = {card: {"cardholder_name": f"{c.pick(PEOPLE)} {c.pick(SURNAMES)}",
                    "last_digits": str(c.rng.randint(1000, 9999)),
                    "balance": float(c.rng.randint(30, 90) * 100)}}
    bookings = {}
    for i in distinct_ids(c, c.rng.randint(5, 8) if c.long else c.rng.randint(0, 1)):
        a, b = c.rng.sample(c.pool(CITIES), 2)
        bookings[str(i)] = {"card_id": card, "travel_from": AIRPORTS[a], "travel_to": AIRPORTS[b],
                            "travel_date": _date(c),
                            "travel_class": "economy", "travel_cost": 300.0, "insurance": None}
    return {"authenticated": c.chance(0.5), "credit_cards": cards, "bookings": bookings,
            "id_seed": c.rng.randrange(9000)}


def _trip(c, lookup):
    """Cities and airport codes of a random trip; with lookup, the codes come from tool calls."""
    a, b = c.rng.sample(c.pool(CITIES), 2)
    if lookup:
        return a, b, c.do("get_nearest_airport_by_city", location=a)["nearest_airport"], \
            c.do("get_nearest_airport_by_city", location=b)["nearest_airport"]
    return AIRPORTS[a], AIRPORTS[b], AIRPORTS[a], AIRPORTS[b]


def travel_sign_in(c):
    if c.api("TravelAPI").authenticated:
        return None
    i, s = c.mem["travel_login"]
    c.do("authenticate_travel", client_id=i, client_secret=s)
    return (c.say(["Log me into the travel service: client id {i}, secret {s}.",
                   "Authenticate with travel using id {i} and secret {s}.",
                   "Sign in to travel booking, client {i}, secret {s}."], i=i, s=s),
            c.say(["Log me into the travel service with client id {i}.",
                   "Authenticate with travel using id {i}.",
                   "Sign in to travel booking as client {i}."], i=i),
            c.say(["The secret is {s}.", "Client secret: {s}.", "Use the secret {s}."], s=s))


def travel_airport(c):
    city = c.pick(CITIES)
    c.do("get_nearest_airport_by_city", location=city)
    return c.say(["Which airport is closest to {x}?", "Find the nearest airport to {x}.",
                  "What airport serves {x}?"], x=city)


def travel_price(c):
    cls, date = c.rng.choice(["economy", "business", "first"]), _date(c)
    a, b, fa, fb = _trip(c, c.chance(0.3))
    c.mem["number"] = c.do("get_flight_cost", travel_from=fa, travel_to=fb, travel_date=date,
                           travel_class=cls)["travel_cost"]
    return c.say(["How much is {ac} flight from {a} to {b} on {d}?",
                  "Price {ac} ticket {a} to {b} for {d}.",
                  "What would {a} to {b} in {c} cost on {d}?"],
                 c=cls, ac=_article(cls), a=a, b=b, d=date)


def travel_book(c):
    api = c.api("TravelAPI")
    if not api.authenticated:
        return None
    card, ref = pick_target(c, "new_card", sorted(api.credit_cards))
    cls, date = c.rng.choice(["economy", "economy", "business"]), _date(c)
    a, b, fa, fb = _trip(c, c.chance(0.3))
    result = c.do("book_flight", card_id=card, travel_date=date, travel_from=fa, travel_to=fb,
                  travel_class=cls)
    c.mem.update(booking=result["booking_id"], booking_card=card, number=result["travel_cost"])
    with_card = "with the card I just added" if ref else f"with card {card}"
    ac = _article(cls)
    return (c.say(["Book me {ac} flight from {a} to {b} on {d} {w}.",
                   "Reserve {ac} seat {a} to {b} on {d}, pay {w}.",
                   "I need {ac} flight {a} to {b} on {d}; pay {w}."],
                  ac=ac, a=a, b=b, d=date, w=with_card),
            c.say(["Book me {ac} flight from {a} to {b} {w}.",
                   "Reserve {ac} seat {a} to {b}, pay {w}.",
                   "I need {ac} flight {a} to {b}; pay {w}."], ac=ac, a=a, b=b, w=with_card),
            c.say(["The date is {d}.", "Make it {d}.", "I want to fly on {d}."], d=date))


def _bookings(c, insured=None):
    api = c.api("TravelAPI")
    if not api.authenticated:
        return []
    return [i for i, b in sorted(api.bookings.items())
            if insured is None or (b["insurance"] is not None) == insured]


def travel_insure(c):
    i, ref = pick_target(c, "booking", _bookings(c, insured=False))
    if i is None:
        return None
    card = c.api("TravelAPI").bookings[i]["card_id"]
    kind = c.rng.choice(["basic", "comprehensive"])
    c.do("purchase_insurance", booking_id=i, insurance_type=kind, card_id=card)
    if ref and c.mem.get("booking_card") == card:
        return c.say(["Now buy {k} insurance for that booking with the same card.",
                      "Insure that trip ({k}), same card as before.",
                      "Add {k} insurance to the flight I just booked, paid with the same card."],
                     k=kind)
    return c.say(["Buy {k} insurance for booking {i} with card {c}.",
                  "Insure booking {i} ({k}), pay with card {c}.",
                  "Add {k} insurance to booking {i} using card {c}."], k=kind, i=i, c=card)


def travel_invoice(c):
    i, ref = pick_target(c, "booking", _bookings(c))
    if i is None:
        return None
    c.do("retrieve_invoice", booking_id=i)
    if ref:
        return c.say(["Show me the invoice for that booking.",
                      "Get the invoice of the flight I booked.",
                      "I need the invoice for that trip."])
    return c.say(["Show me the invoice for booking {i}.", "Get the invoice of booking {i}.",
                  "I need the invoice for booking {i}."], i=i)


def travel_cancel(c):
    i, ref = pick_target(c, "booking", _bookings(c))
    if i is None:
        return None
    c.do("cancel_booking", booking_id=i)
    if ref:
        return c.say(["Cancel that booking.", "Call off the flight I just booked.",
                      "Please cancel that trip."])
    return c.say(["Cancel booking {i}.", "Please cancel my booking {i}.",
                  "Booking {i} has to be cancelled."], i=i)


def travel_add_card(c):
    if not c.api("TravelAPI").authenticated:
        return None
    number = "".join(str(c.rng.randint(0, 9)) for _ in range(16))
    exp, name, cvv = (f"{c.rng.randint(1, 12):02d}/{c.rng.randint(2026, 2030)}",
                      f"{c.pick(PEOPLE)} {c.pick(SURNAMES)}", c.rng.randint(100, 999))
    c.mem["new_card"] = c.do("register_credit_card", card_number=number, expiration_date=exp,
                             cardholder_name=name, card_verification_number=cvv)["card_id"]
    return (c.say(["Add my card {n}, expiring {e}, name {h}, CVV {v}.",
                   "Register card {n} for {h}, expires {e}, CVV {v}.",
                   "Save my credit card: number {n}, holder {h}, expiry {e}, CVV {v}."],
                  n=number, e=exp, h=name, v=cvv),
            c.say(["Add my card {n}, expiring {e}, name {h}.",
                   "Register card {n} for {h}, expires {e}.",
                   "Save my credit card: number {n}, holder {h}, expiry {e}."],
                  n=number, e=exp, h=name),
            c.say(["The CVV is {v}.", "CVV {v}.", "Its security code is {v}."], v=cvv))


TRAVEL = Domain(travel_config,
                [travel_sign_in, travel_airport, travel_price, travel_book, travel_insure,
                 travel_invoice, travel_cancel, travel_add_card],
                [])
