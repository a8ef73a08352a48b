"""``earengine worker``: dream on this machine for an engine on another (see :mod:`earengine.worker.remote`).

On the GPU host: ``earengine worker --new-secret worker.key`` once, copy the file to the laptop,
then ``earengine worker --listen 0.0.0.0:5555 --secret-file worker.key --device cuda``.
"""

from __future__ import annotations

import argparse

from earengine.engine.config import DEVICES
from earengine.errors import ParameterError
from earengine.resources import DEFAULT_EAR


def _worker(args: argparse.Namespace) -> int:
    from earengine.worker.wire import new_secret, parse_endpoint

    if args.new_secret:
        secret = new_secret(args.new_secret)
        print(f"worker: keys written to {args.new_secret} (readable by you only); copy it to the engine's host "
              f"and give it to both ends with --secret-file (server key {secret.server_public.decode()[:8]}…)")
        if not args.listen:
            return 0
    if not args.listen:
        raise ParameterError("give --listen HOST:PORT to serve, or --new-secret FILE to write keys")
    host, port = parse_endpoint(args.listen, "--listen")
    from earengine.worker.remote import WorkerServer

    secret = args.secret_file or (args.new_secret if args.new_secret else None)
    server = WorkerServer(host, port, args.ear, secret=secret, device=args.device, threads=args.threads,
                          say=lambda line: print(line, flush=True))
    try:
        server.start()
        server.serve(duration_s=args.duration, status_every_s=args.status_every)
    except KeyboardInterrupt:
        print("worker: stopping", flush=True)
    finally:
        server.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="dream here for an engine on another machine (earengine run --worker)")
    p.add_argument("--listen", default=None, metavar="HOST:PORT",
                   help="where the engine connects, e.g. 0.0.0.0:5555 (beyond loopback only with --secret-file)")
    p.add_argument("--secret-file", default=None, metavar="FILE",
                   help="the keys both hosts hold (written by --new-secret; the same file on the engine's host)")
    p.add_argument("--new-secret", default=None, metavar="FILE",
                   help="write fresh keys to FILE (readable by you only), then serve with them if --listen is given")
    p.add_argument("--ear", default=str(DEFAULT_EAR),
                   help="ear checkpoint folder to dream with (default: the shipped one, models/ear-default)")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where the ear runs (cuda on a GPU host)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default 0: every core but one)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines (0: none)")
    p.set_defaults(func=_worker)
