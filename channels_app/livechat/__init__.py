"""The website chat widget: visitors' sockets and uploads, agents' replies to them.

The agents' socket (inbox.consumers) relays typing and read marks to visitors through
the two functions re-exported here.
"""

from channels_app.livechat.services import agent_read_relay, agent_typing_relay

__all__ = ["agent_read_relay", "agent_typing_relay"]
