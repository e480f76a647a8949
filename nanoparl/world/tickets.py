"""The support-ticket tool (BFCL's TicketAPI, simplified): log in, create, show, edit, close and
resolve tickets. Its intents are where many cross-turn references live: "close the ticket I just
opened" needs the id a call returned turns earlier. Conventions: base.py.
"""

from nanoparl.world.base import (API, PASSWORDS, USERNAMES, Domain, distinct_ids, err,
                                 login_required, pick_target, too_many)

# ----------------------------------------------------------------------------
# The tool. State: `ticket_queue` (list of ticket dicts), `current_user`.

class TicketAPI(API):
    """A support-ticket system."""

    _defaults = {"ticket_queue": [], "current_user": None}
    _read_only = ("get_ticket", "get_user_tickets")

    def _find(self, ticket_id):
        error = login_required(self.current_user, "the ticket system")
        if error:
            return None, error
        for ticket in self.ticket_queue:
            if ticket["id"] == ticket_id:
                return ticket, None
        return None, err(f"no ticket with id {ticket_id}")

    def ticket_login(self, username: str, password: str):
        """Log in to the ticket system."""
        if not username or not password:
            return err("username and password are required")
        self.current_user = username
        return {"success": True}

    def create_ticket(self, title: str, description: str = "", priority: int = 1):
        """Create a ticket (priority 1-5); returns its id."""
        error = (login_required(self.current_user, "the ticket system")
                 or too_many(self.ticket_queue, "tickets"))
        if error:
            return error
        if not 1 <= priority <= 5:
            return err("priority must be between 1 and 5")
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
                return err(f"invalid update: {key}={value!r}")
        if not 1 <= updates.get("priority", 1) <= 5:
            return err("priority must be between 1 and 5")
        ticket.update(updates)
        return {k: v for k, v in ticket.items() if k != "created_by"}

    def close_ticket(self, ticket_id: int):
        """Close a ticket."""
        ticket, error = self._find(ticket_id)
        if error:
            return error
        if ticket["status"] == "Closed":
            return err(f"ticket {ticket_id} is already closed")
        ticket["status"] = "Closed"
        return {"id": ticket_id, "status": "Closed"}

    def resolve_ticket(self, ticket_id: int, resolution: str):
        """Mark a ticket resolved, with a resolution note."""
        ticket, error = self._find(ticket_id)
        if error:
            return error
        if ticket["status"] in ("Closed", "Resolved"):
            return err(f"ticket {ticket_id} is already {ticket['status'].lower()}")
        ticket["status"], ticket["resolution"] = "Resolved", resolution
        return {"id": ticket_id, "status": "Resolved"}

    def get_user_tickets(self, status: str = None):
        """List your tickets, optionally only those with a given status."""
        error = login_required(self.current_user, "the ticket system")
        if error:
            return error
        return {"tickets": [{"id": t["id"], "title": t["title"], "status": t["status"]}
                            for t in self.ticket_queue if t["created_by"] == self.current_user
                            and (status is None or t["status"] == status)]}

    def logout(self):
        """Log out of the ticket system."""
        error = login_required(self.current_user, "the ticket system")
        if error:
            return error
        self.current_user = None
        return {"success": True}


# ----------------------------------------------------------------------------
# Entity pools: every 4th value only appears in test

TITLES = ["Printer not working", "VPN keeps dropping", "Laptop battery drains fast",
          "Cannot access email", "Monitor flickers", "Password reset needed", "Slow wifi in office",
          "Keyboard missing keys", "Projector will not start", "Software license expired",
          "Phone line is dead", "Shared drive is full", "Badge does not open door",
          "Calendar not syncing", "Mouse stopped working", "Screen is cracked"]
RESOLUTIONS = ["replaced the cable", "reset the password", "restarted the router",
               "installed the update", "swapped the battery", "renewed the license",
               "cleared the cache", "replaced the device"]


# ----------------------------------------------------------------------------
# Intents

def ticket_config(c):
    user, password = c.pick(USERNAMES), c.pick(PASSWORDS)
    c.mem["ticket_login"] = (user, password)
    n = c.rng.randint(7, 10) if c.long else c.rng.randint(1, 3)
    queue = [{"id": i, "title": c.pick(TITLES), "description": "",
              "status": c.rng.choice(["Open", "Open", "Closed"]), "priority": c.rng.randint(1, 5),
              "created_by": user if c.chance(0.8) else c.pick(USERNAMES)}
             for i in distinct_ids(c, n)]
    return {"ticket_queue": queue, "current_user": user if c.chance(0.5) else None,
            "id_seed": c.rng.randrange(9000)}


def _tickets(c, statuses):
    api = c.api("TicketAPI")
    if api.current_user is None:
        return None
    return [t["id"] for t in api.ticket_queue if t["status"] in statuses]


def ticket_sign_in(c):
    if c.api("TicketAPI").current_user is not None:
        return None
    u, p = c.mem["ticket_login"]
    c.do("ticket_login", username=u, password=p)
    return (c.say(["Log me into the ticket system as {u} with password {p}.",
                   "Sign in to support tickets: user {u}, password {p}.",
                   "Please log in to the ticket system, username {u} and password {p}."], u=u, p=p),
            c.say(["Log me into the ticket system as {u}.", "Sign in to support tickets as {u}.",
                   "Please log in to tickets, user {u}."], u=u),
            c.say(["The password is {p}.", "Use password {p}.", "My password is {p}."], p=p))


def ticket_create(c):
    if _tickets(c, ()) is None:
        return None
    title, priority = c.pick(TITLES), c.rng.randint(1, 5)
    c.mem["ticket"] = c.do("create_ticket", title=title, priority=priority)["id"]
    return (c.say(["Open a ticket titled '{t}' with priority {p}.",
                   "Create a support ticket '{t}', priority {p}.",
                   "File a new ticket called '{t}' at priority {p}."], t=title, p=priority),
            c.say(["Open a new support ticket with priority {p}.",
                   "Create a ticket for me, priority {p}.",
                   "File a priority {p} ticket."], p=priority),
            c.say(["The title is '{t}'.", "Call it '{t}'.", "Title it '{t}'."], t=title))


def ticket_show(c):
    i, ref = pick_target(c, "ticket", _tickets(c, ("Open", "Closed", "Resolved")) or [])
    if i is None:
        return None
    c.do("get_ticket", ticket_id=i)
    if ref:
        return c.say(["What is the status of the ticket I just opened?", "Show me that ticket.",
                      "Pull up the ticket from before."])
    return c.say(["Show me ticket {i}.", "What does ticket {i} say?",
                  "Get the details of ticket {i}."], i=i)


def ticket_change_priority(c):
    i, ref = pick_target(c, "ticket", _tickets(c, ("Open",)) or [])
    if i is None:
        return None
    old = next(t["priority"] for t in c.api("TicketAPI").ticket_queue if t["id"] == i)
    p = c.rng.choice([p for p in range(1, 6) if p != old])  # a real change, never a no-op
    c.do("edit_ticket", ticket_id=i, updates={"priority": p})
    if ref:
        return (c.say(["Change the priority of that ticket to {p}.",
                       "Set that ticket to priority {p}.", "Make that ticket priority {p}."], p=p),
                c.say(["Change the priority of that ticket.", "That ticket needs a new priority.",
                       "Update the priority of that ticket."]),
                c.say(["Make it {p}.", "Priority {p}.", "Set it to {p}."], p=p))
    return c.say(["Set the priority of ticket {i} to {p}.", "Change ticket {i} to priority {p}.",
                  "Ticket {i} should be priority {p}."], i=i, p=p)


def ticket_close(c):
    i, ref = pick_target(c, "ticket", _tickets(c, ("Open",)) or [])
    if i is None:
        return None
    c.do("close_ticket", ticket_id=i)
    if ref:
        return c.say(["Close the ticket I just opened.", "Please close that ticket.",
                      "That ticket can be closed now."])
    return c.say(["Close ticket {i}.", "Please close ticket number {i}.",
                  "Ticket {i} can be closed."], i=i)


def ticket_resolve(c):
    i, ref = pick_target(c, "ticket", _tickets(c, ("Open",)) or [])
    if i is None:
        return None
    r = c.pick(RESOLUTIONS)
    c.do("resolve_ticket", ticket_id=i, resolution=r)
    which = "that ticket" if ref else f"ticket {i}"
    return (c.say(["Mark {w} as resolved: '{r}'.", "Resolve {w} with the note '{r}'.",
                   "Close out {w} as resolved, note '{r}'."], w=which, r=r),
            c.say(["Mark {w} as resolved.", "Resolve {w}, please.",
                   "Resolve {w}; it is fixed."], w=which),
            c.say(["The resolution is '{r}'.", "Note: '{r}'.",
                   "Write '{r}' as the resolution."], r=r))


def ticket_list(c):
    if _tickets(c, ()) is None:
        return None
    if c.chance(0.5):
        c.do("get_user_tickets")
        return c.say(["List my tickets.", "Show me all my tickets.", "Which tickets do I have?"])
    c.do("get_user_tickets", status="Open")
    return c.say(["Show my open tickets.", "Which of my tickets are still open?",
                  "List my tickets that are open."])


def ticket_sign_out(c):
    if _tickets(c, ()) is None:
        return None
    c.do("logout")
    return c.say(["Log me out of the ticket system.", "Sign out of tickets.",
                  "I am done with tickets, log out."])


TICKETS = Domain(ticket_config,
                 [ticket_sign_in, ticket_create, ticket_show, ticket_change_priority, ticket_close,
                  ticket_resolve, ticket_list, ticket_sign_out],
                 [ticket_list])
