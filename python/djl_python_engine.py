"""Worker entry point, launched by the server exactly like DJL's (spec §5.1):

  python3 djl_python_engine.py --sock-type unix --sock-name /tmp/djl_sock.N --model-dir DIR
      --entry-point EP --device-id ID --cluster-size 1 --recommended-entry-point REP --log-level info

Parses the arguments, sets up logging on stdout (the server relays it line by line) and runs the loop.
"""

import argparse
import logging
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="djl_python handler worker")
    p.add_argument("--sock-type", choices=["unix", "tcp"], default="unix")
    p.add_argument("--sock-name", default=None, help="Unix socket path (unix)")
    p.add_argument("--port", type=int, default=19000, help="TCP port (tcp)")
    p.add_argument("--model-dir", default=".")
    p.add_argument("--entry-point", default="")
    p.add_argument("--device-id", default="-1")
    p.add_argument("--cluster-size", type=int, default=1)
    p.add_argument("--recommended-entry-point", default="")
    p.add_argument("--log-level", default="info")
    p.add_argument("--tensor-parallel-degree", type=int, default=1)
    p.add_argument("--pipeline-parallel-degree", type=int, default=1)
    p.add_argument("--async-mode", dest="async_mode", action="store_true")
    p.add_argument("--no-async-mode", dest="async_mode", action="store_false")
    p.set_defaults(async_mode=False)
    # Newer DJL launchers pass more flags; an unknown one must not stop the worker from starting.
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"djl_python_engine: ignoring unknown arguments {unknown}", file=sys.stderr)
    if args.sock_type == "unix" and not args.sock_name:
        p.error("--sock-name is required with --sock-type unix")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(levelname)s %(name)s %(message)s")
    if args.async_mode:
        logging.warning("async mode is not supported by this runtime; serving requests one at a time")
    # The model dir must be importable (model.py and its helper modules), ahead of site-packages.
    model_dir = os.path.abspath(args.model_dir)
    if model_dir not in sys.path:
        sys.path.insert(1, model_dir)
    os.chdir(model_dir)
    from djl_python.service_loader import install_legacy_aliases
    from djl_python.sync_engine import PythonEngine

    install_legacy_aliases(model_dir)

    return PythonEngine(args).run() or 0


if __name__ == "__main__":
    sys.exit(main())
