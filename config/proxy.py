"""The reverse proxy in front of separate pools: websockets (`/ws/`) to the socket pool,
everything else to the HTTP pool (settings.ASGI_SERVES). `make run` starts nginx with this
configuration when Redis is set; docs/operations.md shows the same routes for production,
where TLS ends at the proxy.

Run: `python -m config.proxy --listen 127.0.0.1:8000 --http 127.0.0.1:8100
--sockets 127.0.0.1:8101 --prefix var/proxy` prints the nginx configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The app enforces its own, smaller limits per upload (attachments, imports); the proxy's
# only has to let the largest through.
MAX_BODY = "30m"


def nginx_conf(*, listen: str, http_pool: list[str], socket_pool: list[str], prefix: Path) -> str:
    """An nginx configuration (one worker, in the foreground, every file under `prefix`)."""
    servers = {
        "portcullis_http": "".join(f"        server {address};\n" for address in http_pool),
        "portcullis_sockets": "".join(f"        server {address};\n" for address in socket_pool),
    }
    # X-Forwarded-For is set to the peer's address, never appended to: a client's own
    # header would otherwise become the address the audit trail and the network rules see.
    forwarded = """\
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
"""
    return f"""\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    client_max_body_size {MAX_BODY};
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" close;
    }}

    upstream portcullis_http {{
{servers["portcullis_http"]}        keepalive 32;
    }}
    upstream portcullis_sockets {{
{servers["portcullis_sockets"]}    }}

    server {{
        listen {listen};

        location /ws/ {{
            proxy_pass http://portcullis_sockets;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
{forwarded}            proxy_buffering off;
            # Sockets stay open for a working day; the ASGI server pings them (uvicorn: every 20 s).
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}

        location / {{
            proxy_pass http://portcullis_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{forwarded}        }}
    }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", required=True, help="host:port the proxy serves")
    parser.add_argument("--http", action="append", required=True, help="an HTTP pool process")
    parser.add_argument("--sockets", action="append", required=True, help="a socket pool process")
    parser.add_argument("--prefix", type=Path, required=True, help="nginx's pid, log and buffers")
    args = parser.parse_args()
    conf = nginx_conf(
        listen=args.listen, http_pool=args.http, socket_pool=args.sockets, prefix=args.prefix.resolve()
    )
    sys.stdout.write(conf)


if __name__ == "__main__":
    main()
