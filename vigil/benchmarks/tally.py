"""A counting subscriber, run in its own process by the simulator benchmark.

It counts what the platform would receive: telemetry messages, distinct
``(device, seq)`` pairs and the samples in them, and prints the running totals
as one JSON line every half second, so the benchmark measures delivery from
outside the simulator process.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import protocol

_SEQ = re.compile(rb'"seq":(\d+)')


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages = 0
        self.samples = 0
        self.seen: set[tuple[str, int]] = set()

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        match = _SEQ.search(msg.payload)
        key = (msg.topic, int(match.group(1)) if match else -1)
        with self.lock:
            self.messages += 1
            if key not in self.seen:
                self.seen.add(key)
                self.samples += msg.payload.count(b'"ts":')

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return {"t": time.monotonic(), "messages": self.messages,
                    "unique": len(self.seen), "samples": self.samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    tally = Tally()
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tally-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.on_message = tally.on_message

    def on_connect(c: mqtt.Client, u: object, f: object, r: object, p: object) -> None:
        c.subscribe(protocol.subscription("telemetry"), qos=1)
        ready.set()

    client.on_connect = on_connect
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    if not ready.wait(30):
        print(json.dumps({"error": "could not connect"}), flush=True)
        return 1
    print(json.dumps({"ready": True}), flush=True)
    try:
        while True:
            time.sleep(0.5)
            print(json.dumps(tally.snapshot()), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
