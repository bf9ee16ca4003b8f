"""How a long-running server process (an ASGI server, a Celery worker) runs Python's cyclic
garbage collector, set once the process has loaded its code.

The collector's full passes stop the process while they walk every tracked object: at
1,000 open sockets each took 100-200 ms (timed with a gc callback), in the middle of live
chat. What is loaded at start (code, settings, URL maps) lives as long as the process:
frozen, no pass walks it again (an email worker: 226 -> 254 msg/s, memory flat).
"""

import gc

# A socket server's frames and requests leave little cyclic garbage: younger passes that
# run less often (Python's default: every 700 allocations, and 10 and 10 of each before
# the next generation's) promote fewer objects that are still in use to the full passes,
# which then come rarely (livechat p99 at 100 msg/s, a 40 s run each: 70 -> 21 ms). An email worker's
# parsed messages are cyclic: collected late, its memory grew (224 -> 281 MB); it keeps
# the defaults.
SOCKET_SERVER_THRESHOLDS = (20_000, 20, 20)


def collector_tune(*, socket_server: bool) -> None:
    gc.freeze()
    if socket_server:
        gc.set_threshold(*SOCKET_SERVER_THRESHOLDS)
