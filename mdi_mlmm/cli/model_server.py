"""``mdi-mlmm model-server``: hold one ML model for many engines and batch their calls."""
from __future__ import annotations

import os

from ._types import nonneg_float, port_or_any, positive_int


def register(sub):
    from .engine import add_model_options

    p = sub.add_parser("model-server", help="serve one ML model to many engines, batching their evaluations",
                       description="Load the model once and answer the engines of several windows (started with "
                                   "--model server:INFO.json); structures that arrive together are evaluated "
                                   "in one model call. `mdi-mlmm hydration` starts one by itself when it runs "
                                   "several ML windows at once on this machine.")
    add_model_options(p)
    p.add_argument("--info", required=True, metavar="JSON",
                   help="file to write the address and key to (mode 0600); clients get --model server:JSON")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for engines on other machines)")
    p.add_argument("--port", type=port_or_any, default=0, help="TCP port (default 0: any free port)")
    p.add_argument("--max-wait-ms", type=nonneg_float, default=100.0,
                   help="longest a request waits for the other clients' requests to join its batch (default 100 ms; "
                        "in lockstep windows a batch is sent as soon as every client has asked)")
    p.add_argument("--max-batch", type=positive_int, default=64, help="most structures per model call (default 64)")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this one exits")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..potentials.shared import ModelServer
    from .engine import load_from_args

    if args.port:
        from ..engine.transport import check_port_free

        check_port_free(args.port, option="--port", host=args.host)  # before the model is loaded
    potential = load_from_args(args)
    server = ModelServer(potential, host=args.host, port=args.port, max_wait_ms=args.max_wait_ms,
                         max_batch=args.max_batch)
    parent = os.getppid() if args.exit_with_parent else None
    info = server.write_info(args.info)
    print(f"model server listening on {server.address[0]}:{server.address[1]}; clients use --model server:{info}",
          flush=True)
    try:
        server.serve_forever(parent_pid=parent)
    finally:
        info.unlink(missing_ok=True)
    print(json.dumps(server.stats_dict()), flush=True)
    return 0
