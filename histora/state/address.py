"""The browser changed its address itself: the state takes it on without a round trip.

A page that updates its own address with ``history.replaceState`` (no navigation, so
its state is not reloaded) is not seen by Reflex's router. Its next event carries the
new address, and Reflex takes that for a navigation: it rebuilds the router vars and
sends them to the browser, which has them already (on the chat page, about 1 KB of
payload, 200 bytes on the wire). The page's event handler that leads to the change
says so beforehand, so the new address is no change when it comes.
"""

from __future__ import annotations

import urllib.parse

import reflex as rx
from reflex.constants import RouteVar
from reflex_base.event.context import EventContext

# The router vars that describe the address: the browser set the address itself, so
# when the state takes it on, they need not travel back (nor the vars worked out from
# them that come out the same).
_ADDRESS_VARS = frozenset({"rx_router_page", "rx_router_url"})


def expect_address_query(state: rx.State, query: dict[str, str]) -> None:
    """Take the address the browser is about to show, this ``query`` in place of the
    current one (set by the page itself with ``history.replaceState``), as the state's
    router data, as Reflex would on the next event, without sending it back. From an
    event handler, holding the state.

    What the browser will send is worked out the way Reflex's frontend builds it (the
    path, the query's own parameters and the route's); should it differ all the same,
    the next event is a navigation again, as before: more bytes, nothing wrong.
    """
    try:
        event = EventContext.get()
    except LookupError:  # not from an event: there is no next event to prepare for
        return
    root = state._get_root_state()
    previous = dict(root.router_data)
    as_path = str(previous.get(RouteVar.ORIGIN, ""))
    if not as_path:
        return
    path, _, search = as_path.partition("#")[0].partition("?")
    # The query Reflex holds is the address's own parameters, then the route's.
    own = {name.replace("-", "_") for name in urllib.parse.parse_qs(search, True)}
    route = {k: v for k, v in dict(previous.get(RouteVar.QUERY) or {}).items() if k not in own}
    address = {
        RouteVar.ORIGIN: f"{path}?{urllib.parse.urlencode(query)}" if query else path,
        RouteVar.QUERY: {**query, **route},
    }
    dirty_before = set(root.dirty_vars)
    # The route's own vars (``character_id``) are worked out from the address again.
    worked_out = {name: getattr(root, name) for name in root.computed_vars}
    root.router_data = root._update_router_vars({**previous, **address}, previous)
    unchanged = {
        name
        for name in root.dirty_vars - dirty_before
        if name in _ADDRESS_VARS or (name in worked_out and getattr(root, name) == worked_out[name])
    }
    root.dirty_vars.difference_update(unchanged)
    # Events this one goes on to (the reply's stream) read the same routing data. From
    # an event the browser sent (a send), not one chained from the page's load, whose
    # routing data the load's other events share. Only a context that carries the
    # browser's routing data: an upload runs outside any event, in Reflex's root
    # context, whose (empty) routing data every such context shares.
    if event.router_data:
        event.router_data.update(address)
