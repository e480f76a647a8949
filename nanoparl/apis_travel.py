"""The travel tool (BFCL's TravelAPI, simplified): credit cards, flight costs, bookings, insurance.
Conventions as in apis.py; the base class and the shared limits are in apis_services.py."""

import datetime
import zlib

from nanoparl.apis_services import API, _err, _full, _login_required

# ----------------------------------------------------------------------------
# Travel. State: `authenticated`, `credit_cards` (card_id -> card), `bookings` (booking_id ->
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
        return None if len(text) == 10 else _err(f"invalid date {text!r}, use YYYY-MM-DD")
    except ValueError:
        return _err(f"invalid date {text!r}, use YYYY-MM-DD")


class TravelAPI(API):
    """Flight booking with stored credit cards."""

    _defaults = {"authenticated": False, "credit_cards": {}, "bookings": {}}
    _read_only = ("get_nearest_airport_by_city", "get_flight_cost", "retrieve_invoice")

    def _check_trip(self, travel_from, travel_to, travel_date, travel_class):
        codes = set(AIRPORTS.values())
        if travel_from not in codes or travel_to not in codes:
            return _err("unknown airport code")
        if travel_from == travel_to:
            return _err("origin and destination are the same")
        if travel_class not in CLASS_FACTOR:
            return _err("travel_class must be 'economy', 'business' or 'first'")
        return _bad_date(travel_date)

    def _booking(self, booking_id):
        error = _login_required(self.authenticated, "the travel service")
        if error:
            return None, error
        if booking_id not in self.bookings:
            return None, _err(f"no booking with id {booking_id}")
        return self.bookings[booking_id], None

    def authenticate_travel(self, client_id: str, client_secret: str):
        """Log in to the travel service."""
        if not client_id or not client_secret:
            return _err("client_id and client_secret are required")
        self.authenticated = True
        return {"status": "authenticated"}

    def get_nearest_airport_by_city(self, location: str):
        """The airport code for a city."""
        if location not in AIRPORTS:
            return _err(f"no airport known for {location!r}")
        return {"nearest_airport": AIRPORTS[location]}

    def get_flight_cost(self, travel_from: str, travel_to: str, travel_date: str, travel_class: str):
        """Price of a flight between two airport codes."""
        error = self._check_trip(travel_from, travel_to, travel_date, travel_class)
        return error or {"travel_cost": flight_cost(travel_from, travel_to, travel_class)}

    def register_credit_card(self, card_number: str, expiration_date: str, cardholder_name: str,
                             card_verification_number: int):
        """Store a credit card (expiration MM/YYYY); returns its card_id."""
        error = _login_required(self.authenticated, "the travel service") or _full(self.credit_cards, "credit cards")
        if error:
            return error
        if len(card_number) != 16 or not card_number.isdigit():
            return _err("card_number must have 16 digits")
        if len(expiration_date) != 7 or expiration_date[2] != "/":
            return _err("expiration_date must be MM/YYYY")
        if not 100 <= card_verification_number <= 999:
            return _err("card_verification_number must have 3 digits")
        card_id = str(self._new_id({int(c) for c in self.credit_cards}))
        self.credit_cards[card_id] = {"cardholder_name": cardholder_name,
                                      "last_digits": card_number[-4:], "balance": 5000.0}
        return {"card_id": card_id}

    def book_flight(self, card_id: str, travel_date: str, travel_from: str, travel_to: str,
                    travel_class: str):
        """Book a flight paid with a stored card; returns the booking_id."""
        error = (_login_required(self.authenticated, "the travel service")
                 or self._check_trip(travel_from, travel_to, travel_date, travel_class)
                 or _full(self.bookings, "bookings"))
        if error:
            return error
        if card_id not in self.credit_cards:
            return _err(f"no card with id {card_id}")
        card, cost = self.credit_cards[card_id], flight_cost(travel_from, travel_to, travel_class)
        if cost > card["balance"]:
            return _err("insufficient card balance")
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
            return _err("insurance_type must be 'basic' or 'comprehensive'")
        if booking["insurance"] is not None:
            return _err(f"booking {booking_id} is already insured")
        if card_id not in self.credit_cards:
            return _err(f"no card with id {card_id}")
        card, cost = self.credit_cards[card_id], INSURANCE_COST[insurance_type]
        if cost > card["balance"]:
            return _err("insufficient card balance")
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
