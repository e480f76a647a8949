"""Intents for the ticket and trading tools (conventions: see intents_files.py; travel: intents_travel.py).

These are where cross-turn references live: "close the ticket I just opened", "cancel the order I
just placed", "insure that booking with the same card" all need an ID returned turns earlier.
"""

from nanoparl.intents_files import Domain

USERNAMES = ["jsmith", "akim", "mlopez", "tchen", "rpatel", "lgarcia", "dnguyen", "ebrown", "kjones",
             "swilson", "pmartin", "hlee"]
PASSWORDS = ["sunflower", "bluebird", "maple42", "orbit77", "granite", "coral9", "lantern", "meadow5",
             "falcon", "harbor3", "pebble", "willow8"]


def _target(c, key, candidates):
    """(id, refers_to_earlier_turn): the ID remembered under `key` if still valid, else any candidate."""
    if c.mem.get(key) in candidates and c.chance(0.7):
        return c.mem[key], True
    return (c.rng.choice(candidates), False) if candidates else (None, False)


def _ids(c, n):
    ids = []
    while len(ids) < n:
        i = c.rng.randint(1000, 9999)
        if i not in ids:
            ids.append(i)
    return ids


# ----------------------------------------------------------------------------
# Tickets

TITLES = ["Printer not working", "VPN keeps dropping", "Laptop battery drains fast", "Cannot access email",
          "Monitor flickers", "Password reset needed", "Slow wifi in office", "Keyboard missing keys",
          "Projector will not start", "Software license expired", "Phone line is dead", "Shared drive is full",
          "Badge does not open door", "Calendar not syncing", "Mouse stopped working", "Screen is cracked"]
RESOLUTIONS = ["replaced the cable", "reset the password", "restarted the router", "installed the update",
               "swapped the battery", "renewed the license", "cleared the cache", "replaced the device"]


def ticket_config(c):
    user, password = c.pick(USERNAMES), c.pick(PASSWORDS)
    c.mem["ticket_login"] = (user, password)
    n = c.rng.randint(7, 10) if c.long else c.rng.randint(1, 3)
    queue = [{"id": i, "title": c.pick(TITLES), "description": "", "status": c.rng.choice(["Open", "Open", "Closed"]),
              "priority": c.rng.randint(1, 5), "created_by": user if c.chance(0.8) else c.pick(USERNAMES)}
             for i in _ids(c, n)]
    return {"ticket_queue": queue, "current_user": user if c.chance(0.5) else None, "id_seed": c.rng.randrange(9000)}


def _tickets(c, statuses):
    api = c.api("TicketAPI")
    if api.current_user is None:
        return None
    return [t["id"] for t in api.ticket_queue if t["status"] in statuses]


def t_login(c):
    if c.api("TicketAPI").current_user is not None:
        return None
    u, p = c.mem["ticket_login"]
    c.do("ticket_login", username=u, password=p)
    return (c.say(["Log me into the ticket system as {u} with password {p}.", "Sign in to support tickets: user {u}, password {p}.",
                   "Please log in to the ticket system, username {u} and password {p}."], u=u, p=p),
            c.say(["Log me into the ticket system as {u}.", "Sign in to support tickets as {u}.", "Please log in to tickets, user {u}."], u=u),
            c.say(["The password is {p}.", "Use password {p}.", "My password is {p}."], p=p))


def t_create(c):
    if _tickets(c, ()) is None:
        return None
    title, priority = c.pick(TITLES), c.rng.randint(1, 5)
    c.mem["ticket"] = c.do("create_ticket", title=title, priority=priority)["id"]
    return (c.say(["Open a ticket titled '{t}' with priority {p}.", "Create a support ticket '{t}', priority {p}.",
                   "File a new ticket called '{t}' at priority {p}."], t=title, p=priority),
            c.say(["Open a new support ticket with priority {p}.", "Create a ticket for me, priority {p}.",
                   "File a priority {p} ticket."], p=priority),
            c.say(["The title is '{t}'.", "Call it '{t}'.", "Title it '{t}'."], t=title))


def t_get(c):
    i, ref = _target(c, "ticket", _tickets(c, ("Open", "Closed", "Resolved")) or [])
    if i is None:
        return None
    c.do("get_ticket", ticket_id=i)
    if ref:
        return c.say(["What is the status of the ticket I just opened?", "Show me that ticket.", "Pull up the ticket from before."])
    return c.say(["Show me ticket {i}.", "What does ticket {i} say?", "Get the details of ticket {i}."], i=i)


def t_edit(c):
    i, ref = _target(c, "ticket", _tickets(c, ("Open",)) or [])
    if i is None:
        return None
    old = next(t["priority"] for t in c.api("TicketAPI").ticket_queue if t["id"] == i)
    p = c.rng.choice([p for p in range(1, 6) if p != old])  # a real change, never a no-op
    c.do("edit_ticket", ticket_id=i, updates={"priority": p})
    if ref:
        return (c.say(["Change the priority of that ticket to {p}.", "Set that ticket to priority {p}.", "Make that ticket priority {p}."], p=p),
                c.say(["Change the priority of that ticket.", "That ticket needs a new priority.", "Update the priority of that ticket."]),
                c.say(["Make it {p}.", "Priority {p}.", "Set it to {p}."], p=p))
    return c.say(["Set the priority of ticket {i} to {p}.", "Change ticket {i} to priority {p}.", "Ticket {i} should be priority {p}."], i=i, p=p)


def t_close(c):
    i, ref = _target(c, "ticket", _tickets(c, ("Open",)) or [])
    if i is None:
        return None
    c.do("close_ticket", ticket_id=i)
    if ref:
        return c.say(["Close the ticket I just opened.", "Please close that ticket.", "That ticket can be closed now."])
    return c.say(["Close ticket {i}.", "Please close ticket number {i}.", "Ticket {i} can be closed."], i=i)


def t_resolve(c):
    i, ref = _target(c, "ticket", _tickets(c, ("Open",)) or [])
    if i is None:
        return None
    r = c.pick(RESOLUTIONS)
    c.do("resolve_ticket", ticket_id=i, resolution=r)
    which = "that ticket" if ref else f"ticket {i}"
    return (c.say(["Mark {w} as resolved: '{r}'.", "Resolve {w} with the note '{r}'.", "Close out {w} as resolved, note '{r}'."], w=which, r=r),
            c.say(["Mark {w} as resolved.", "Resolve {w}, please.", "Resolve {w}; it is fixed."], w=which),
            c.say(["The resolution is '{r}'.", "Note: '{r}'.", "Write '{r}' as the resolution."], r=r))


def t_list(c):
    if _tickets(c, ()) is None:
        return None
    if c.chance(0.5):
        c.do("get_user_tickets")
        return c.say(["List my tickets.", "Show me all my tickets.", "Which tickets do I have?"])
    c.do("get_user_tickets", status="Open")
    return c.say(["Show my open tickets.", "Which of my tickets are still open?", "List my tickets that are open."])


def t_logout(c):
    if _tickets(c, ()) is None:
        return None
    c.do("logout")
    return c.say(["Log me out of the ticket system.", "Sign out of tickets.", "I am done with tickets, log out."])


TICKETS = Domain(ticket_config, [t_login, t_create, t_get, t_edit, t_close, t_resolve, t_list, t_logout], [t_list])


# ----------------------------------------------------------------------------
# Trading

COMPANIES = [("Apple", "AAPL"), ("Microsoft", "MSFT"), ("Alphabet", "GOOG"), ("Amazon", "AMZN"), ("Tesla", "TSLA"),
             ("Nvidia", "NVDA"), ("Meta", "META"), ("Netflix", "NFLX"), ("Intel", "INTC"), ("Oracle", "ORCL"),
             ("Adobe", "ADBE"), ("Salesforce", "CRM"), ("Boeing", "BA"), ("Nike", "NKE"), ("Pfizer", "PFE"),
             ("Disney", "DIS"), ("Ford", "F"), ("Uber", "UBER"), ("Spotify", "SPOT"), ("Shopify", "SHOP")]


def trade_config(c):
    user, password = c.pick(USERNAMES), c.pick(PASSWORDS)
    c.mem["trade_login"] = (user, password)
    stocks = {s: {"name": n, "price": round(c.rng.uniform(10, 400), 2), "percent_change": round(c.rng.uniform(-3, 3), 2)}
              for n, s in c.sample(COMPANIES, c.rng.randint(3, 5))}
    watch = c.rng.sample(sorted(stocks), c.rng.randint(0, 2))
    if c.long:  # distractor symbols crowd the watchlist
        for _ in range(c.rng.randint(10, 14)):
            s = "".join(c.rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(4))
            stocks[s] = {"name": f"{s.title()} Holdings", "price": round(c.rng.uniform(5, 90), 2), "percent_change": 0.0}
            watch.append(s)
    orders = [{"id": i, "order_type": "Buy", "symbol": c.rng.choice(sorted(stocks)), "price": 50.0,
               "amount": c.rng.randint(1, 9), "status": c.rng.choice(["Open", "Filled"])}
              for i in _ids(c, c.rng.randint(0, 2))]
    return {"authenticated": c.chance(0.5), "balance": float(c.rng.randint(20, 200) * 100), "stocks": stocks,
            "watchlist": watch, "orders": orders, "id_seed": c.rng.randrange(9000)}


def _company(c):
    stocks = c.api("TradingBot").stocks
    s = c.mem["stock"] if c.mem.get("stock") in stocks and c.chance(0.3) else None
    s = s or c.rng.choice([s for s in sorted(stocks) if not stocks[s]["name"].endswith("Holdings")])
    return s, stocks[s]["name"]


def tr_login(c):
    if c.api("TradingBot").authenticated:
        return None
    u, p = c.mem["trade_login"]
    c.do("trading_login", username=u, password=p)
    return (c.say(["Log in to my trading account as {u}, password {p}.", "Sign in to trading with user {u} and password {p}.",
                   "Please log me into the trading app: {u} / {p}."], u=u, p=p),
            c.say(["Log in to my trading account as {u}.", "Sign in to trading with user {u}.", "Please log me into the trading app as {u}."], u=u),
            c.say(["The password is {p}.", "Password: {p}.", "Use {p} as the password."], p=p))


def tr_symbol(c):
    s, name = _company(c)
    c.mem["stock"] = c.do("get_symbol_by_name", name=name)["symbol"]
    return c.say(["What is the ticker symbol for {n}?", "Look up the stock symbol of {n}.", "Which symbol does {n} trade under?"], n=name)


def tr_price(c):
    s, name = _company(c)
    if c.chance(0.5):
        c.do("get_symbol_by_name", name=name)
        text = c.say(["How is {n} stock doing today?", "Get me the current price of {n}.", "What does {n} trade at right now?"], n=name)
    else:
        text = c.say(["What is {s} trading at?", "Get the stock info for {s}.", "Show me the price of {s}."], s=s)
    c.mem["number"] = c.do("get_stock_info", symbol=s)["price"]
    c.mem["stock"] = s
    return text


def tr_order(c):
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
        c.mem["order"] = c.do("place_order", order_type=kind, symbol=s, price=price, amount=n)["order_id"]
        return c.say(["{K} {n} shares of {s} at the current price.", "Check the price of {s} and place a {k} order for {n} shares.",
                      "Place a {k} order for {n} {s} shares at today's price."], K=kind, k=k, n=n, s=s)
    c.mem["order"] = c.do("place_order", order_type=kind, symbol=s, price=price, amount=n)["order_id"]
    p = f"{price:.2f}"
    return (c.say(["{K} {n} shares of {s} at ${p}.", "Place a {k} order: {n} {s} shares, ${p} each.", "I want to {k} {n} of {s} at ${p} a share."],
                  K=kind, k=k, n=n, s=s, p=p),
            c.say(["{K} some {s} shares at ${p}.", "Place a {k} order for {s} at ${p}.", "I want to {k} {s} at ${p} a share."], K=kind, k=k, s=s, p=p),
            c.say(["Make it {n} shares.", "{n} shares, please.", "The amount is {n}."], n=n))


def _orders(c, statuses):
    api = c.api("TradingBot")
    return [o["id"] for o in api.orders if o["status"] in statuses] if api.authenticated else []


def tr_cancel(c):
    i, ref = _target(c, "order", _orders(c, ("Open",)))
    if i is None:
        return None
    c.do("cancel_order", order_id=i)
    if ref:
        return c.say(["Cancel the order I just placed.", "Call off that order.", "Please cancel that order."])
    return c.say(["Cancel order {i}.", "Please cancel my order {i}.", "Order {i} should be cancelled."], i=i)


def tr_details(c):
    i, ref = _target(c, "order", _orders(c, ("Open", "Filled", "Cancelled")))
    if i is None:
        return None
    c.do("get_order_details", order_id=i)
    if ref:
        return c.say(["Show me the details of that order.", "What is the status of the order I placed?", "Check on that order."])
    return c.say(["Show me the details of order {i}.", "What is the status of order {i}?", "Look up order {i}."], i=i)


def tr_fund(c):
    if not c.api("TradingBot").authenticated:
        return None
    a = c.rng.randint(1, 50) * 100
    c.do("fund_account", amount=a)
    return (c.say(["Deposit ${a} into my trading account.", "Add ${a} to my account balance.", "Fund my account with ${a}."], a=a),
            c.say(["Put some money into my trading account.", "I want to add funds to my account.", "Top up my trading balance."]),
            c.say(["Make it ${a}.", "${a}, please.", "Deposit ${a}."], a=a))


def tr_watch(c):
    s, name = _company(c)
    if s in c.api("TradingBot").watchlist:
        return None
    if c.chance(0.4):
        c.do("get_symbol_by_name", name=name)
        c.do("add_to_watchlist", stock=s)
        return c.say(["Add {n} to my watchlist.", "Watch {n} stock for me.", "Put {n} on my watchlist."], n=name)
    c.do("add_to_watchlist", stock=s)
    return c.say(["Add {s} to my watchlist.", "Start watching {s}.", "Put {s} on the watchlist."], s=s)


def tr_watchlist(c):
    c.do("get_watchlist")
    return c.say(["Show my watchlist.", "Which stocks am I watching?", "What is on my watchlist?"])


def tr_account(c):
    if not c.api("TradingBot").authenticated:
        return None
    c.mem["number"] = c.do("get_account_info")["balance"]
    return c.say(["What is my account balance?", "How much money is in my trading account?", "Show my account info."])


TRADING = Domain(trade_config, [tr_login, tr_symbol, tr_price, tr_order, tr_cancel, tr_details, tr_fund, tr_watch,
                                tr_watchlist, tr_account], [tr_watchlist])


DOMAINS = {"TicketAPI": TICKETS, "TradingBot": TRADING}
