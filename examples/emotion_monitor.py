#!/usr/bin/python3
"""The seremotion element from Python (PyGObject): plays a recording through
`seremotion` and prints one line per result read from the bus.

    /usr/bin/python3 examples/emotion_monitor.py call.wav [mix|per-channel]

Needs Debian's python3-gi and gir1.2-gstreamer-1.0 (scripts/setup.sh installs
them; they belong to the system Python, not a virtualenv) and the installed
plugin (scripts/setup.sh puts it where GStreamer finds it).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def describe(s):
    """One readable line from a seremotion or seremotion-summary structure."""
    if s.get_name() == "seremotion":
        _, start = s.get_uint64("timestamp")
        _, channel = s.get_int("channel")
        _, confidence = s.get_double("confidence")
        return (
            f"{start / Gst.SECOND:7.1f} s  channel {channel:>2}  "
            f"{s.get_string('emotion'):<9} {confidence:.2f}"
        )
    _, channel = s.get_int("channel")
    return f"summary channel {channel}: dominant {s.get_string('dominant')}"


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: emotion_monitor.py FILE [mix|per-channel]")
    path = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "mix"
    Gst.init(None)
    if Gst.ElementFactory.find("seremotion") is None:
        sys.exit("the seremotion element is not installed: run scripts/setup.sh")

    pipeline = Gst.parse_launch(
        "filesrc name=src ! decodebin ! audioconvert "
        f"! seremotion channel-mode={mode} ! fakesink sync=false"
    )
    pipeline.get_by_name("src").set_property("location", path)
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    status = 0
    while True:
        msg = bus.timed_pop_filtered(
            Gst.CLOCK_TIME_NONE,
            Gst.MessageType.ELEMENT | Gst.MessageType.EOS | Gst.MessageType.ERROR,
        )
        if msg.type == Gst.MessageType.ELEMENT:
            s = msg.get_structure()
            if s is not None and s.get_name() in ("seremotion", "seremotion-summary"):
                print(describe(s), flush=True)
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(f"error: {err.message} ({debug})", file=sys.stderr)
            status = 1
            break
        else:
            break
    pipeline.set_state(Gst.State.NULL)
    sys.exit(status)


if __name__ == "__main__":
    main()
