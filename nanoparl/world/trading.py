"""The stock-trading tool (BFCL's TradingBot, simplified): log in, look up symbols and prices,
place and cancel orders, fund the account, keep a watchlist. "Cancel the order I just placed" needs
the order id a call returned turns earlier. Conventions: base.py.
"""

from nanoparl.world.base import (API, PASSWORDS, USERNAMES, Domain, distinct_ids, err,
                                 login_required, pick_target, too_many)

# Like MAX_ITEMS (base.py), a limit on state that legal calls can grow; generated tasks stay far
# below (balances of ~30,000).
MAX_AMOUNT = 1e9        # one payment into an account, one share price: keeps every sum finite

# ----------------------------------------------------------------------------
# The tool. State: `authenticated`, `balance`, `stocks` (symbol -> name, price, percent_change),
# `watchlist`, `orders` (list of order dicts).

class TradingBot(API):
    """A stock-trading account."""

    _defaults = {"authenticated": False, "balance": 10000.0, "stocks": {}, "watchlist": [],
                 "orders": []}
    _read_only = ("get_symbol_by_name", "get_stock_info", "get_order_details", "get_watchlist",
                  "get_account_info")

    def _order(self, order_id):
        error = login_required(self.authenticated, "the trading account")
        if error:
            return None, error
        for order in self.orders:
            if order["id"] == order_id:
                return order, None
        return None, err(f"no order with id {order_id}")

    def trading_login(self, username: str, password: str):
        """Log in to the trading account."""
        if self.authenticated:
            return err("already logged in")
        if not username or not password:
            return err("username and password are required")
        self.authenticated = True
        return {"status": "logged in"}

    def get_symbol_by_name(self, name: str):
        """The stock symbol of a company."""
        for symbol, info in self.stocks.items():
            if info["name"].lower() == name.lower():
                return {"symbol": symbol}
        return err(f"no stock for company {name!r}")

    def get_stock_info(self, symbol: str):
        """Price and daily change of a stock."""
        if symbol not in self.stocks:
            return err(f"unknown symbol {symbol!r}")
        info = self.stocks[symbol]
        return {"price": info["price"], "percent_change": info["percent_change"]}

    def place_order(self, order_type: str, symbol: str, price: float, amount: int):
        """Place a 'Buy' or 'Sell' order; a buy reserves price * amount from the balance."""
        error = (login_required(self.authenticated, "the trading account")
                 or too_many(self.orders, "orders"))
        if error:
            return error
        if order_type not in ("Buy", "Sell"):
            return err("order_type must be 'Buy' or 'Sell'")
        if symbol not in self.stocks:
            return err(f"unknown symbol {symbol!r}")
        if price <= 0 or amount <= 0:
            return err("price and amount must be positive")
        if price > MAX_AMOUNT:
            return err(f"price above the limit of {MAX_AMOUNT:g}")
        cost = round(price * amount, 2)
        if order_type == "Buy":
            if cost > self.balance:
                return err(f"insufficient funds: order costs {cost}, balance is {self.balance}")
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
            return err(f"order {order_id} is not open")
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
        error = login_required(self.authenticated, "the trading account")
        if error:
            return error
        if amount <= 0:
            return err("amount must be positive")
        if amount > MAX_AMOUNT:
            return err(f"amount above the limit of {MAX_AMOUNT:g}")
        self.balance = round(self.balance + amount, 2)
        return {"balance": self.balance}

    def add_to_watchlist(self, stock: str):
        """Add a stock symbol to the watchlist."""
        if stock not in self.stocks:
            return err(f"unknown symbol {stock!r}")
        if stock not in self.watchlist:
            self.watchlist.append(stock)
        return {"watchlist": list(self.watchlist)}

    def get_watchlist(self):
        """Show the watchlist."""
        return {"watchlist": list(self.watchlist)}

    def get_account_info(self):
        """Show the balance and the number of open orders."""
        error = login_required(self.authenticated, "the trading account")
        if error:
            return error
        return {"balance": self.balance,
                "open_orders": sum(o["status"] == "Open" for o in self.orders)}


# ----------------------------------------------------------------------------
# Entity pool: every 4th value only appears in test

COMPANIES = [("Apple", "AAPL"), ("Microsoft", "MSFT"), ("Alphabet", "GOOG"), ("Amazon", "AMZN"),
             ("Tesla", "TSLA"), ("Nvidia", "NVDA"), ("Meta", "META"), ("Netflix", "NFLX"),
             ("Intel", "INTC"), ("Oracle", "ORCL"), ("Adobe", "ADBE"), ("Salesforce", "CRM"),
             ("Boeing", "BA"), ("Nike", "NKE"), ("Pfizer", "PFE"), ("Disney", "DIS"), ("Ford", "F"),
             ("Uber", "UBER"), ("Spotify", "SPOT"), ("Shopify", "SHOP")]


# ----------------------------------------------------------------------------
# Intents

def trading_config(c):
    user, password = c.pick(USERNAMES), c.pick(PASSWORDS)
    c.mem["trade_login"] = (user, password)
    stocks = {s: {"name": n, "price": round(c.rng.uniform(10, 400), 2),
                  "percent_change": round(c.rng.uniform(-3, 3), 2)}
              for n, s in c.sample(COMPANIES, c.rng.randint(3, 5))}
    watch = c.rng.sample(sorted(stocks), c.rng.randint(0, 2))
    if c.long:  # distractor symbols crowd the watchlist
        for _ in range(c.rng.randint(10, 14)):
            s = "".join(c.rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(4))
            stocks[s] = {"name": f"{s.title()} Holdings", "price": round(c.rng.uniform(5, 90), 2),
                         "percent_change": 0.0}
            watch.append(s)
    orders = [{"id": i, "order_type": "Buy", "symbol": c.rng.choice(sorted(stocks)), "price": 50.0,
               "amount": c.rng.randint(1, 9), "status": c.rng.choice(["Open", "Filled"])}
              for i in distinct_ids(c, c.rng.randint(0, 2))]
    return {"authenticated": c.chance(0.5), "balance": float(c.rng.randint(20, 200) * 100),
            "stocks": stocks, "watchlist": watch, "orders": orders,
            "id_seed": c.rng.randrange(9000)}


def _company(c):
    stocks = c.api("TradingBot").stocks
    s = c.mem["stock"] if c.mem.get("stock") in stocks and c.chance(0.3) else None
    s = s or c.rng.choice([s for s in sorted(stocks) if not stocks[s]["name"].endswith("Holdings")])
    return s, stocks[s]["name"]


def trade_sign_in(c):
    if c.api("TradingBot").authenticated:
        return None
    u, p = c.mem["trade_login"]
    c.do("trading_login", username=u, password=p)
    return (c.say(["Log in to my trading account as {u}, password {p}.",
                   "Sign in to trading with user {u} and password {p}.",
                   "Please log me into the trading app: {u} / {p}."], u=u, p=p),
            c.say(["Log in to my trading account as {u}.", "Sign in to trading with user {u}.",
                   "Please log me into the trading app as {u}."], u=u),
            c.say(["The password is {p}.", "Password: {p}.", "Use {p} as the password."], p=p))


def trade_symbol(c):
    s, name = _company(c)
    c.mem["stock"] = c.do("get_symbol_by_name", name=name)["symbol"]
    return c.say(["What is the ticker symbol for {n}?", "Look up the stock symbol of {n}.",
                  "Which symbol does {n} trade under?"], n=name)


def trade_price(c):
    s, name = _company(c)
    if c.chance(0.5):
        c.do("get_symbol_by_name", name=name)
        text = c.say(["How is {n} stock doing today?", "Get me the current price of {n}.",
                      "What does {n} trade at right now?"], n=name)
    else:
        text = c.say(["What is {s} trading at?", "Get the stock info for {s}.",
                      "Show me the price of {s}."], s=s)
    c.mem["number"] = c.do("get_stock_info", symbol=s)["price"]
    c.mem["stock"] = s
    return text


def trade_order(c):
    api = c.api("TradingBot")
    if not api.authenticated:
        return None
    s, name = _company(c)
    price = api.stocks[s]["price"]
    if api.balance < price:
        return None
    n = c.rng.randint(1, min(20, int(api.balance // price)))
    kind = c.rng.choice(["Buy", "Buy", "Sell"])
    k = kind.lower()
    if c.chance(0.3):
        c.do("get_stock_info", symbol=s)
        c.mem["order"] = c.do("place_order", order_type=kind, symbol=s, price=price,
                              amount=n)["order_id"]
        return c.say(["{K} {n} shares of {s} at the current price.",
                      "Check the price of {s} and place a {k} order for {n} shares.",
                      "Place a {k} order for {n} {s} shares at today's price."],
                     K=kind, k=k, n=n, s=s)
    c.mem["order"] = c.do("place_order", order_type=kind, symbol=s, price=price,
                          amount=n)["order_id"]
    p = f"{price:.2f}"
    return (c.say(["{K} {n} shares of {s} at ${p}.",
                   "Place a {k} order: {n} {s} shares, ${p} each.",
                   "I want to {k} {n} of {s} at ${p} a share."],
                  K=kind, k=k, n=n, s=s, p=p),
            c.say(["{K} some {s} shares at ${p}.", "Place a {k} order for {s} at ${p}.",
                   "I want to {k} {s} at ${p} a share."], K=kind, k=k, s=s, p=p),
            c.say(["Make it {n} shares.", "{n} shares, please.", "The amount is {n}."], n=n))


def _orders(c, statuses):
    api = c.api("TradingBot")
    return [o["id"] for o in api.orders if o["status"] in statuses] if api.authenticated else []


def trade_cancel_order(c):
    i, ref = pick_target(c, "order", _orders(c, ("Open",)))
    if i is None:
        return None
    c.do("cancel_order", order_id=i)
    if ref:
        return c.say(["Cancel the order I just placed.", "Call off that order.",
                      "Please cancel that order."])
    return c.say(["Cancel order {i}.", "Please cancel my order {i}.",
                  "Order {i} should be cancelled."], i=i)


def trade_order_details(c):
    i, ref = pick_target(c, "order", _orders(c, ("Open", "Filled", "Cancelled")))
    if i is None:
        return None
    c.do("get_order_details", order_id=i)
    if ref:
        return c.say(["Show me the details of that order.",
                      "What is the status of the order I placed?", "Check on that order."])
    return c.say(["Show me the details of order {i}.", "What is the status of order {i}?",
                  "Look up order {i}."], i=i)


def trade_fund_account(c):
    if not c.api("TradingBot").authenticated:
        return None
    a = c.rng.randint(1, 50) * 100
    c.do("fund_account", amount=a)
    return (c.say(["Deposit ${a} into my trading account.", "Add ${a} to my account balance.",
                   "Fund my account with ${a}."], a=a),
            c.say(["Put some money into my trading account.", "I want to add funds to my account.",
                   "Top up my trading balance."]),
            c.say(["Make it ${a}.", "${a}, please.", "Deposit ${a}."], a=a))


def trade_watch(c):
    s, name = _company(c)
    if s in c.api("TradingBot").watchlist:
        return None
    if c.chance(0.4):
        c.do("get_symbol_by_name", name=name)
        c.do("add_to_watchlist", stock=s)
        return c.say(["Add {n} to my watchlist.", "Watch {n} stock for me.",
                      "Put {n} on my watchlist."], n=name)
    c.do("add_to_watchlist", stock=s)
    return c.say(["Add {s} to my watchlist.", "Start watching {s}.",
                  "Put {s} on the watchlist."], s=s)


def trade_show_watchlist(c):
    c.do("get_watchlist")
    return c.say(["Show my watchlist.", "Which stocks am I watching?", "What is on my watchlist?"])


def trade_balance(c):
    if not c.api("TradingBot").authenticated:
        return None
    c.mem["number"] = c.do("get_account_info")["balance"]
    return c.say(["What is my account balance?", "How much money is in my trading account?",
                  "Show my account info."])


TRADING = Domain(trading_config,
                 [trade_sign_in, trade_symbol, trade_price, trade_order, trade_cancel_order,
                  trade_order_details, trade_fund_account, trade_watch, trade_show_watchlist,
                  trade_balance],
                 [trade_show_watchlist])
