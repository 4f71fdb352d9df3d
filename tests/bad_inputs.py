"""The table of invalid requests: it drives both the library tests and the HTTP tests."""

# (keyword arguments of Pipeline.make_query, the field the error must name, message regex)
BAD_QUERIES = [
    ({"k": 0}, "k", r"1\.\.50"),
    ({"k": 51}, "k", r"1\.\.50"),
    ({"text": "a" * 201}, "q", "at most 200 characters"),
    ({"text": "ban\x00ana"}, "q", "control characters"),
    ({"text": "ban\x1b[2J"}, "q", "control characters"),
    ({"text": "two\nlines"}, "q", "control characters"),
    ({"user_id": -1}, "user_id", "non-negative"),
    ({"hour": 24}, "hour", r"0\.\.23"),
    ({"store": "no-such-store"}, "store", "unknown store"),
    ({"department": "no such department"}, "department", "unknown department"),
    ({"department": "9999"}, "department", "unknown department"),
    ({"aisle": "no such aisle"}, "aisle", "unknown aisle"),
]

# Values that only exist on the wire (the library is typed): (query string, field)
BAD_WIRE = [
    ("explain=maybe", "explain"),
    ("k=abc", "k"),
    ("k=2.5", "k"),
    ("user_id=alice", "user_id"),
    ("hour=noon", "hour"),
]

HTTP_NAMES = {"text": "q"}
