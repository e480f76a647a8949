"""The base class of all tools, and the service-style tools: tickets, trading, messaging (travel:
apis_travel.py; BFCL-style; apis.py states the conventions and holds the registry of all classes).
"""

import copy


# Limits on state that legal calls can grow: a model looping on create_ticket or send_message must
# not grow the state (and the checker's copies of it) without bound. Generated tasks stay far below
# (at most ~20 tickets, orders, messages... and balances of ~30,000).
MAX_ITEMS = 500         # tickets, orders, messages, contacts, credit cards, bookings
MAX_AMOUNT = 1e9        # one payment into an account, one share price: keeps every sum finite


def _err(message):
    return {"error": message}


def _full(items, what):
    """An error when a growing list or dict already holds MAX_ITEMS entries, else None."""
    return _err(f"too many {what} (at most {MAX_ITEMS})") if len(items) >= MAX_ITEMS else None


# ----------------------------------------------------------------------------
# Base class

class API:
    """Base class: `_defaults` names the public state and its default values."""

    _defaults = {}
    _read_only = ()  # tools that never change the state (used by tests and rewards)

    def __init__(self):
        self._load_scenario({})

    def _load_scenario(self, config):
        config = dict(config or {})
        # id_seed is private: it fixes which IDs are handed out, so that the model's copy of the
        # world and the ground truth's copy hand out the same IDs for the same calls.
        self._id_state = int(config.pop("id_seed", 0))
        unknown = set(config) - set(self._defaults)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown config keys {sorted(unknown)}")
        for key, default in self._defaults.items():
            setattr(self, key, copy.deepcopy(config.get(key, default)))

    def _state(self):
        return copy.deepcopy({k: v for k, v in vars(self).items() if not k.startswith("_")})

    def _new_id(self, taken):
        """Next 4-digit ID, not in `taken`. A full-period LCG mod 9000: looks random, so the model
        must copy IDs rather than guess them, yet is deterministic given id_seed."""
        for _ in range(9000):
            self._id_state = (self._id_state * 7201 + 4231) % 9000
            if 1000 + self._id_state not in taken:
                return 1000 + self._id_state
        raise RuntimeError("out of IDs")


def _login_required(flag, what):
    return None if flag else _err(f"not logged in to {what}")


# ----------------------------------------------------------------------------
# Tickets. State: `ticket_queue` (list of ticket dicts), `current_user`.

class TicketAPI(API):
    """A support-ticket system."""

    _defaults = {"ticket_queue": [], "current_user": None}
    _read_only = ("get_ticket", "get_user_tickets")

    def _find(self, ticket_id):
        error = _login_required(self.current_user, "the ticket system")
        if error:
            return None, error
        for ticket in self.ticket_queue:
            if ticket["id"] == ticket_id:
                return ticket, None
        return None, _err(f"no ticket with id {ticket_id}")

    def ticket_login(self, username: str, password: str):
        """Log in to the ticket system."""
        if not username or not password:
            return _err("username and password are required")
        self.current_user = username
        return {"success": True}

    def create_ticket(self, title: str, description: str = "", priority: int = 1):
        """Create a ticket (priority 1-5); returns its id."""
        error = _login_required(self.current_user, "the ticket system") or _full(self.ticket_queue, "tickets")
        if error:
            return error
        if not 1 <= priority <= 5:
            return _err("priority must be between 1 and 5")
        ticket_id = self._new_id({t["id"] for t in self.ticket_queue})
        self.ticket_queue.append({"id": ticket_id, "title": title, "description": description,
                                  "status": "Open", "priority": priority,
                                  "created_by": self.current_user})
        return {"id": ticket_id, "status": "Open"}

    def get_ticket(self, ticket_id: int):
        """Show one ticket."""
        ticket, error = self._find(ticket_id)
        return error or {k: v for k, v in ticket.items() if k != "created_by"}

    def edit_ticket(self, ticket_id: int, updates: dict):
        """Change fields of a ticket: title, description, status or priority."""
        ticket, error = self._find(ticket_id)
        if error:
            return error
        types = {"title": str, "description": str, "status": str, "priority": int}
        for key, value in updates.items():
            if key not in types or type(value) is not types[key]:
                return _err(f"invalid update: {key}={value!r}")
        if not 1 <= updates.get("priority", 1) <= 5:
            return _err("priority must be between 1 and 5")
        ticket.update(updates)
        return {k: v for k, v in ticket.items() if k != "created_by"}

    def close_ticket(self, ticket_id: int):
        """Close a ticket."""
        ticket, error = self._find(ticket_id)
        if error:
            return error
        if ticket["status"] == "Closed":
            return _err(f"ticket {ticket_id} is already closed")
        ticket["status"] = "Closed"
        return {"id": ticket_id, "status": "Closed"}

    def resolve_ticket(self, ticket_id: int, resolution: str):
        """Mark a ticket resolved, with a resolution note."""
        ticket, error = self._find(ticket_id)
        if error:
            return error
        if ticket["status"] in ("Closed", "Resolved"):
            return _err(f"ticket {ticket_id} is already {ticket['status'].lower()}")
        ticket["status"], ticket["resolution"] = "Resolved", resolution
        return {"id": ticket_id, "status": "Resolved"}

    def get_user_tickets(self, status: str = None):
        """List your tickets, optionally only those with a given status."""
        error = _login_required(self.current_user, "the ticket system")
        if error:
            return error
        return {"tickets": [{"id": t["id"], "title": t["title"], "status": t["status"]}
                            for t in self.ticket_queue if t["created_by"] == self.current_user
                            and (status is None or t["status"] == status)]}

    def logout(self):
        """Log out of the ticket system."""
        error = _login_required(self.current_user, "the ticket system")
        if error:
            return error
        self.current_user = None
        return {"success": True}


# ----------------------------------------------------------------------------
# Trading. State: `authenticated`, `balance`, `stocks` (symbol -> name, price, percent_change),
# `watchlist`, `orders` (list of order dicts).

class TradingBot(API):
    """A stock-trading account."""

    _defaults = {"authenticated": False, "balance": 10000.0, "stocks": {}, "watchlist": [],
                 "orders": []}
    _read_only = ("get_symbol_by_name", "get_stock_info", "get_order_details", "get_watchlist",
                  "get_account_info")

    def _order(self, order_id):
        error = _login_required(self.authenticated, "the trading account")
        if error:
            return None, error
        for order in self.orders:
            if order["id"] == order_id:
                return order, None
        return None, _err(f"no order with id {order_id}")

    def trading_login(self, username: str, password: str):
        """Log in to the trading account."""
        if self.authenticated:
            return _err("already logged in")
        if not username or not password:
            return _err("username and password are required")
        self.authenticated = True
        return {"status": "logged in"}

    def get_symbol_by_name(self, name: str):
        """The stock symbol of a company."""
        for symbol, info in self.stocks.items():
            if info["name"].lower() == name.lower():
                return {"symbol": symbol}
        return _err(f"no stock for company {name!r}")

    def get_stock_info(self, symbol: str):
        """Price and daily change of a stock."""
        if symbol not in self.stocks:
            return _err(f"unknown symbol {symbol!r}")
        info = self.stocks[symbol]
        return {"price": info["price"], "percent_change": info["percent_change"]}

    def place_order(self, order_type: str, symbol: str, price: float, amount: int):
        """Place a 'Buy' or 'Sell' order; a buy reserves price * amount from the balance."""
        error = _login_required(self.authenticated, "the trading account") or _full(self.orders, "orders")
        if error:
            return error
        if order_type not in ("Buy", "Sell"):
            return _err("order_type must be 'Buy' or 'Sell'")
        if symbol not in self.stocks:
            return _err(f"unknown symbol {symbol!r}")
        if price <= 0 or amount <= 0:
            return _err("price and amount must be positive")
        if price > MAX_AMOUNT:
            return _err(f"price above the limit of {MAX_AMOUNT:g}")
        cost = round(price * amount, 2)
        if order_type == "Buy":
            if cost > self.balance:
                return _err(f"insufficient funds: order costs {cost}, balance is {self.balance}")
            self.balance = round(self.balance - cost, 2)
        order_id = self._new_id({o["id"] for o in self.orders})
        self.orders.append({"id": order_id, "order_type": order_type, "symbol": symbol,
                            "price": price, "amount": amount, "status": "Open"})
        return {"order_id": order_id, "status": "Open"}

    def cancel_order(self, order_id: int):
        """Cancel an open order (a buy gives its money back)."""
        order, error = self._order(order_id)
        if error:
            return error
        if order["status"] != "Open":
            return _err(f"order {order_id} is not open")
        if order["order_type"] == "Buy":
            self.balance = round(self.balance + order["price"] * order["amount"], 2)
        order["status"] = "Cancelled"
        return {"order_id": order_id, "status": "Cancelled"}

    def get_order_details(self, order_id: int):
        """Show one order."""
        order, error = self._order(order_id)
        return error or dict(order)

    def fund_account(self, amount: float):
        """Add money to the account balance."""
        error = _login_required(self.authenticated, "the trading account")
        if error:
            return error
        if amount <= 0:
            return _err("amount must be positive")
        if amount > MAX_AMOUNT:
            return _err(f"amount above the limit of {MAX_AMOUNT:g}")
        self.balance = round(self.balance + amount, 2)
        return {"balance": self.balance}

    def add_to_watchlist(self, stock: str):
        """Add a stock symbol to the watchlist."""
        if stock not in self.stocks:
            return _err(f"unknown symbol {stock!r}")
        if stock not in self.watchlist:
            self.watchlist.append(stock)
        return {"watchlist": list(self.watchlist)}

    def get_watchlist(self):
        """Show the watchlist."""
        return {"watchlist": list(self.watchlist)}

    def get_account_info(self):
        """Show the balance and the number of open orders."""
        error = _login_required(self.authenticated, "the trading account")
        if error:
            return error
        return {"balance": self.balance,
                "open_orders": sum(o["status"] == "Open" for o in self.orders)}


# ----------------------------------------------------------------------------
# Messaging. State: `user_map` (name -> user_id), `current_user`, `contacts`, `messages_sent`.

class MessageAPI(API):
    """A messaging app."""

    _defaults = {"user_map": {}, "current_user": None, "contacts": [], "messages_sent": []}
    _read_only = ("get_user_id", "view_messages_sent", "search_messages")

    def message_login(self, user_id: str):
        """Log in to the messaging app."""
        if user_id not in self.user_map.values():
            return _err(f"no user with id {user_id}")
        self.current_user = user_id
        return {"login_status": True}

    def get_user_id(self, user: str):
        """The user_id of a user name."""
        if user not in self.user_map:
            return _err(f"no user named {user!r}")
        return {"user_id": self.user_map[user]}

    def add_contact(self, user_name: str):
        """Add a user to your contacts (unknown users get a new id)."""
        error = _login_required(self.current_user, "the messaging app") or _full(self.contacts, "contacts")
        if error:
            return error
        if user_name in self.contacts:
            return _err(f"{user_name} is already a contact")
        if user_name not in self.user_map:
            self.user_map[user_name] = str(self._new_id({int(u) for u in self.user_map.values()}))
        self.contacts.append(user_name)
        return {"added_status": True, "user_id": self.user_map[user_name]}

    def send_message(self, receiver_id: str, message: str):
        """Send a message to a user_id."""
        error = _login_required(self.current_user, "the messaging app") or _full(self.messages_sent, "messages")
        if error:
            return error
        if receiver_id not in self.user_map.values():
            return _err(f"no user with id {receiver_id}")
        message_id = self._new_id({m["id"] for m in self.messages_sent})
        self.messages_sent.append({"id": message_id, "receiver_id": receiver_id, "message": message})
        return {"sent_status": True, "message_id": message_id}

    def view_messages_sent(self):
        """All messages you have sent."""
        error = _login_required(self.current_user, "the messaging app")
        return error or {"messages": [dict(m) for m in self.messages_sent]}

    def search_messages(self, keyword: str):
        """Sent messages that contain a keyword (case-insensitive)."""
        error = _login_required(self.current_user, "the messaging app")
        if error:
            return error
        return {"results": [dict(m) for m in self.messages_sent
                            if keyword.lower() in m["message"].lower()]}
