"""`vigil-agent`: run the edge agent from a TOML file and VIGIL_AGENT_* overrides."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from edge_agent.config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil-agent", description=__doc__)
    parser.add_argument("config", nargs="?", default=os.environ.get("VIGIL_AGENT_CONFIG"),
                        help="TOML config file (default: $VIGIL_AGENT_CONFIG; "
                             "without one: environment only)")
    parser.add_argument("--log-level", default=os.environ.get("VIGIL_AGENT_LOG_LEVEL", "INFO"))
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until stopped)")
    parser.add_argument("--check", action="store_true", help="validate the settings and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"vigil-agent: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"configuration of {config.device.id} is valid")
        return 0
    from edge_agent.agent import Agent

    Agent(config).run(duration_s=args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
