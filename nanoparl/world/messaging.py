"""The messaging tool (BFCL's MessageAPI, simplified): log in, look up users, add contacts, send
and search messages. Conventions: base.py.
"""

from nanoparl.world.base import API, PEOPLE, Domain, err, login_required, too_many

# ----------------------------------------------------------------------------
# The tool. State: `user_map` (name -> user_id), `current_user`, `contacts`, `messages_sent`.

class MessageAPI(API):
    """A messaging app."""

    _defaults = {"user_map": {}, "current_user": None, "contacts": [], "messages_sent": []}
    _read_only = ("get_user_id", "view_messages_sent", "search_messages")

    def message_login(self, user_id: str):
        """Log in to the messaging app."""
        if user_id not in self.user_map.values():
            return err(f"no user with id {user_id}")
        self.current_user = user_id
        return {"login_status": True}

    def get_user_id(self, user: str):
        """The user_id of a user name."""
        if user not in self.user_map:
            return err(f"no user named {user!r}")
        return {"user_id": self.user_map[user]}

    def add_contact(self, user_name: str):
        """Add a user to your contacts (unknown users get a new id)."""
        error = (login_required(self.current_user, "the messaging app")
                 or too_many(self.contacts, "contacts"))
        if error:
            return error
        if user_name in self.contacts:
            return err(f"{user_name} is already a contact")
        if user_name not in self.user_map:
            self.user_map[user_name] = str(self._new_id({int(u) for u in self.user_map.values()}))
        self.contacts.append(user_name)
        return {"added_status": True, "user_id": self.user_map[user_name]}

    def send_message(self, receiver_id: str, message: str):
        """Send a message to a user_id."""
        error = (login_required(self.current_user, "the messaging app")
                 or too_many(self.messages_sent, "messages"))
        if error:
            return error
        if receiver_id not in self.user_map.values():
            return err(f"no user with id {receiver_id}")
        message_id = self._new_id({m["id"] for m in self.messages_sent})
        self.messages_sent.append({"id": message_id, "receiver_id": receiver_id,
                                   "message": message})
        return {"sent_status": True, "message_id": message_id}

    def view_messages_sent(self):
        """All messages you have sent."""
        error = login_required(self.current_user, "the messaging app")
        return error or {"messages": [dict(m) for m in self.messages_sent]}

    def search_messages(self, keyword: str):
        """Sent messages that contain a keyword (case-insensitive)."""
        error = login_required(self.current_user, "the messaging app")
        if error:
            return error
        return {"results": [dict(m) for m in self.messages_sent
                            if keyword.lower() in m["message"].lower()]}


# ----------------------------------------------------------------------------
# Entity pool: every 4th value only appears in test

MESSAGES = ["See you at noon", "The report is ready", "Running late today", "Lunch tomorrow",
            "Call me back please", "The meeting moved to Friday", "Thanks for the help",
            "Happy birthday", "The budget is approved", "Please review the draft",
            "Bring the charger", "The train is delayed"]


def _digits(c, taken=()):
    while True:
        value = str(c.rng.randint(1000, 9999))
        if value not in taken:
            return value


# ----------------------------------------------------------------------------
# Intents

def messaging_config(c):
    people = c.sample(PEOPLE, c.rng.randint(3, 5))
    ids = {}
    for p in people:
        ids[p] = _digits(c, ids.values())
    me = people[0]
    c.mem["me"] = ids[me]
    others = people[1:]
    sent = [{"id": int(_digits(c)), "receiver_id": ids[c.rng.choice(others)],
             "message": c.pick(MESSAGES)}
            for _ in range(c.rng.randint(8, 12) if c.long else c.rng.randint(0, 2))]
    return {"user_map": ids, "current_user": ids[me] if c.chance(0.5) else None,
            "contacts": c.rng.sample(others, c.rng.randint(0, len(others))), "messages_sent": sent,
            "id_seed": c.rng.randrange(9000)}


def _signed_in(c):
    return c.api("MessageAPI").current_user is not None


def messaging_sign_in(c):
    if _signed_in(c):
        return None
    uid = c.mem["me"]
    c.do("message_login", user_id=uid)
    return (c.say(["Log me into the messaging app, my user id is {u}.",
                   "Sign in to messages as user {u}.",
                   "Please log in to messaging with user id {u}."], u=uid),
            c.say(["Log me into the messaging app.", "Sign me in to messages.",
                   "I want to use the messaging app."]),
            c.say(["My user id is {u}.", "Use user id {u}.", "The id is {u}."], u=uid))


def messaging_user_id(c):
    people = [p for p, i in c.api("MessageAPI").user_map.items() if i != c.mem["me"]]
    p = c.rng.choice(people)
    c.mem["contact"] = (p, c.do("get_user_id", user=p)["user_id"])
    return c.say(["What is {p}'s user id?", "Look up the user id of {p}.",
                  "Find the id for {p}."], p=p)


def messaging_add_contact(c):
    api = c.api("MessageAPI")
    candidates = [p for p in c.pool(PEOPLE)
                  if p not in api.contacts and api.user_map.get(p) != c.mem["me"]]
    if not _signed_in(c) or not candidates:
        return None
    p = c.rng.choice(candidates)
    c.mem["contact"] = (p, c.do("add_contact", user_name=p)["user_id"])
    return c.say(["Add {p} to my contacts.", "Save {p} as a contact.",
                  "Put {p} in my contact list."], p=p)


def messaging_send(c):
    if not _signed_in(c):
        return None
    text = c.pick(MESSAGES)
    if "contact" in c.mem and c.chance(0.6):
        p, uid = c.mem["contact"]
        c.do("send_message", receiver_id=uid, message=text)
        return c.say(["Now send {p} the message '{m}'.", "Message {p}: '{m}'.",
                      "Send them this message: '{m}'."], p=p, m=text)
    people = [p for p, i in c.api("MessageAPI").user_map.items() if i != c.mem["me"]]
    p = c.rng.choice(people)
    uid = c.do("get_user_id", user=p)["user_id"]
    c.do("send_message", receiver_id=uid, message=text)
    c.mem["contact"] = (p, uid)
    return (c.say(["Send {p} the message '{m}'.", "Text {p}: '{m}'.",
                   "Tell {p} '{m}' by message."], p=p, m=text),
            c.say(["Send {p} a message.", "I want to message {p}.", "Write to {p} for me."], p=p),
            c.say(["Say '{m}'.", "The message is '{m}'.", "Write '{m}'."], m=text))


def messaging_list_sent(c):
    if not _signed_in(c):
        return None
    c.do("view_messages_sent")
    return c.say(["Show me the messages I have sent.", "List my sent messages.",
                  "What messages did I send?"])


def messaging_search(c):
    sent = c.api("MessageAPI").messages_sent
    if not _signed_in(c) or not sent:
        return None
    word = c.rng.choice(c.rng.choice(sent)["message"].split())
    c.do("search_messages", keyword=word)
    return c.say(["Find my messages that mention '{w}'.", "Search my sent messages for '{w}'.",
                  "Which messages contain the word '{w}'?"], w=word)


MESSAGING = Domain(messaging_config,
                   [messaging_sign_in, messaging_user_id, messaging_add_contact, messaging_send,
                    messaging_list_sent, messaging_search],
                   [messaging_list_sent])

