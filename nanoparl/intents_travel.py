"""Intents for the travel tool (conventions: see intents_files.py): "insure that booking with the
same card" needs the booking id a tool returned turns earlier."""

from nanoparl.apis_travel import AIRPORTS
from nanoparl.intents_files import PEOPLE, Domain
from nanoparl.intents_services import _ids, _target

CITIES = list(AIRPORTS)
CLIENTS = ["trip-desk", "fly-mate", "jet-set", "sky-hop", "go-away", "wander", "tour-pro", "voyager"]
SECRETS = ["k9x2", "zq71", "m4p8", "r2d5", "t7w3", "b6n1", "h8c4", "y3f9"]
SURNAMES = ["Lee", "Ortiz", "Park", "Wu", "Stone", "Reid", "Moss", "Lane"]


def _article(travel_class):
    return ("an " if travel_class == "economy" else "a ") + travel_class


def _date(c):
    return f"2025-{c.rng.randint(1, 12):02d}-{c.rng.randint(1, 28):02d}"


def travel_config(c):
    c.mem["travel_login"] = (c.pick(CLIENTS), c.pick(SECRETS))
    card = str(c.rng.randint(1000, 9999))
    cards = {card: {"cardholder_name": f"{c.pick(PEOPLE)} {c.pick(SURNAMES)}", "last_digits": str(c.rng.randint(1000, 9999)),
                    "balance": float(c.rng.randint(30, 90) * 100)}}
    bookings = {}
    for i in _ids(c, c.rng.randint(5, 8) if c.long else c.rng.randint(0, 1)):
        a, b = c.rng.sample(c.pool(CITIES), 2)
        bookings[str(i)] = {"card_id": card, "travel_from": AIRPORTS[a], "travel_to": AIRPORTS[b], "travel_date": _date(c),
                            "travel_class": "economy", "travel_cost": 300.0, "insurance": None}
    return {"authenticated": c.chance(0.5), "credit_cards": cards, "bookings": bookings, "id_seed": c.rng.randrange(9000)}


def _trip(c, lookup):
    """Cities and airport codes of a random trip; with lookup, the codes come from tool calls."""
    a, b = c.rng.sample(c.pool(CITIES), 2)
    if lookup:
        return a, b, c.do("get_nearest_airport_by_city", location=a)["nearest_airport"], \
            c.do("get_nearest_airport_by_city", location=b)["nearest_airport"]
    return AIRPORTS[a], AIRPORTS[b], AIRPORTS[a], AIRPORTS[b]


def tv_auth(c):
    if c.api("TravelAPI").authenticated:
        return None
    i, s = c.mem["travel_login"]
    c.do("authenticate_travel", client_id=i, client_secret=s)
    return (c.say(["Log me into the travel service: client id {i}, secret {s}.", "Authenticate with travel using id {i} and secret {s}.",
                   "Sign in to travel booking, client {i}, secret {s}."], i=i, s=s),
            c.say(["Log me into the travel service with client id {i}.", "Authenticate with travel using id {i}.",
                   "Sign in to travel booking as client {i}."], i=i),
            c.say(["The secret is {s}.", "Client secret: {s}.", "Use the secret {s}."], s=s))


def tv_airport(c):
    city = c.pick(CITIES)
    c.do("get_nearest_airport_by_city", location=city)
    return c.say(["Which airport is closest to {x}?", "Find the nearest airport to {x}.", "What airport serves {x}?"], x=city)


def tv_cost(c):
    cls, date = c.rng.choice(["economy", "business", "first"]), _date(c)
    a, b, fa, fb = _trip(c, c.chance(0.3))
    c.mem["number"] = c.do("get_flight_cost", travel_from=fa, travel_to=fb, travel_date=date, travel_class=cls)["travel_cost"]
    return c.say(["How much is {ac} flight from {a} to {b} on {d}?", "Price {ac} ticket {a} to {b} for {d}.",
                  "What would {a} to {b} in {c} cost on {d}?"], c=cls, ac=_article(cls), a=a, b=b, d=date)


def tv_book(c):
    api = c.api("TravelAPI")
    if not api.authenticated:
        return None
    card, ref = _target(c, "new_card", sorted(api.credit_cards))
    cls, date = c.rng.choice(["economy", "economy", "business"]), _date(c)
    a, b, fa, fb = _trip(c, c.chance(0.3))
    result = c.do("book_flight", card_id=card, travel_date=date, travel_from=fa, travel_to=fb, travel_class=cls)
    c.mem.update(booking=result["booking_id"], booking_card=card, number=result["travel_cost"])
    with_card = "with the card I just added" if ref else f"with card {card}"
    ac = _article(cls)
    return (c.say(["Book me {ac} flight from {a} to {b} on {d} {w}.", "Reserve {ac} seat {a} to {b} on {d}, pay {w}.",
                   "I need {ac} flight {a} to {b} on {d}; pay {w}."], ac=ac, a=a, b=b, d=date, w=with_card),
            c.say(["Book me {ac} flight from {a} to {b} {w}.", "Reserve {ac} seat {a} to {b}, pay {w}.",
                   "I need {ac} flight {a} to {b}; pay {w}."], ac=ac, a=a, b=b, w=with_card),
            c.say(["The date is {d}.", "Make it {d}.", "I want to fly on {d}."], d=date))


def _bookings(c, insured=None):
    api = c.api("TravelAPI")
    if not api.authenticated:
        return []
    return [i for i, b in sorted(api.bookings.items()) if insured is None or (b["insurance"] is not None) == insured]


def tv_insure(c):
    i, ref = _target(c, "booking", _bookings(c, insured=False))
    if i is None:
        return None
    card, kind = c.api("TravelAPI").bookings[i]["card_id"], c.rng.choice(["basic", "comprehensive"])
    c.do("purchase_insurance", booking_id=i, insurance_type=kind, card_id=card)
    if ref and c.mem.get("booking_card") == card:
        return c.say(["Now buy {k} insurance for that booking with the same card.", "Insure that trip ({k}), same card as before.",
                      "Add {k} insurance to the flight I just booked, paid with the same card."], k=kind)
    return c.say(["Buy {k} insurance for booking {i} with card {c}.", "Insure booking {i} ({k}), pay with card {c}.",
                  "Add {k} insurance to booking {i} using card {c}."], k=kind, i=i, c=card)


def tv_invoice(c):
    i, ref = _target(c, "booking", _bookings(c))
    if i is None:
        return None
    c.do("retrieve_invoice", booking_id=i)
    if ref:
        return c.say(["Show me the invoice for that booking.", "Get the invoice of the flight I booked.", "I need the invoice for that trip."])
    return c.say(["Show me the invoice for booking {i}.", "Get the invoice of booking {i}.", "I need the invoice for booking {i}."], i=i)


def tv_cancel(c):
    i, ref = _target(c, "booking", _bookings(c))
    if i is None:
        return None
    c.do("cancel_booking", booking_id=i)
    if ref:
        return c.say(["Cancel that booking.", "Call off the flight I just booked.", "Please cancel that trip."])
    return c.say(["Cancel booking {i}.", "Please cancel my booking {i}.", "Booking {i} has to be cancelled."], i=i)


def tv_card(c):
    if not c.api("TravelAPI").authenticated:
        return None
    number = "".join(str(c.rng.randint(0, 9)) for _ in range(16))
    exp, name, cvv = f"{c.rng.randint(1, 12):02d}/{c.rng.randint(2026, 2030)}", f"{c.pick(PEOPLE)} {c.pick(SURNAMES)}", c.rng.randint(100, 999)
    c.mem["new_card"] = c.do("register_credit_card", card_number=number, expiration_date=exp, cardholder_name=name,
                             card_verification_number=cvv)["card_id"]
    return (c.say(["Add my card {n}, expiring {e}, name {h}, CVV {v}.", "Register card {n} for {h}, expires {e}, CVV {v}.",
                   "Save my credit card: number {n}, holder {h}, expiry {e}, CVV {v}."], n=number, e=exp, h=name, v=cvv),
            c.say(["Add my card {n}, expiring {e}, name {h}.", "Register card {n} for {h}, expires {e}.",
                   "Save my credit card: number {n}, holder {h}, expiry {e}."], n=number, e=exp, h=name),
            c.say(["The CVV is {v}.", "CVV {v}.", "Its security code is {v}."], v=cvv))


TRAVEL = Domain(travel_config, [tv_auth, tv_airport, tv_cost, tv_book, tv_insure, tv_invoice, tv_cancel, tv_card], [])

DOMAINS = {"TravelAPI": TRAVEL}
