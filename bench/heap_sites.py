#!/usr/bin/env python3
"""The live heap of a massif snapshot, by allocation site, per session.

    heap_sites.py SNAPSHOT SESSIONS                  one target
    heap_sites.py --compare SERVER SINK SESSIONS     both, side by side

A site is the allocation's two innermost frames that are not allocator or
standard-library plumbing (so a `Vec` growing inside tungstenite is named by
tungstenite's frames, not by `RawVec`). Massif's tree keeps every path above
its threshold; what falls below is summed as "below massif's threshold".
bench/heap.sh takes the snapshots.
"""

import re
import sys

# Frames that say how memory was allocated, not who wanted it.
PLUMBING = re.compile(
    r"(library/(alloc|core|std)/|/raw_vec|alloc::alloc|__rust|__rdl|rdl_alloc|malloc|"
    r"UnknownInlinedFun|loom/std|\?\?\?)"
)
# Generic helpers that allocate for a caller (by function name, whatever the crate).
HELPERS = re.compile(
    r"^(alloc|allocate|do_alloc|alloc_impl\w*|realloc|grow\w*|finish_grow|new_uninit\w*|"
    r"fallible_with_capacity|prepare_resize|resize_inner|reserve\w*|with_capacity\w*|"
    r"try_allocate_in|box_new\w*|to_vec\w*|from_iter\w*|collect\w*)$"
)
NODE = re.compile(r"^\s*n(\d+): (\d+) (.*)$")
FRAME = re.compile(r"^0x[0-9A-Fa-f]+: (.*) \(([^()]*)\)$")
FRAMES_PER_SITE = 2


def short(function):
    """A function name without generic arguments, closures kept."""
    previous = None
    while previous != function:
        previous = function
        function = re.sub(r"<[^<>]*>", "", function)
    return function[-70:]


def site(path):
    """The name of an allocation's site, from its path of massif frames (innermost first)."""
    names = []
    for description in path:
        frame = FRAME.match(description)
        if not frame:
            if "below massif's threshold" in description:
                return "below massif's threshold"
            continue
        function, location = frame.groups()
        if PLUMBING.search(location) or PLUMBING.search(function) or HELPERS.match(short(function)):
            continue
        names.append(f"{short(function)} ({location.rsplit('/', 1)[-1]})")
        if len(names) == FRAMES_PER_SITE:
            break
    return " <- ".join(names) or "unattributed"


def sites(path):
    """Bytes by site of the last detailed snapshot in a massif file."""
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("heap_tree=detailed")]
    if not starts:
        sys.exit(f"{path}: no detailed snapshot")
    tree = []
    for line in lines[starts[-1] + 1 :]:
        if not NODE.match(line):
            break
        tree.append(line)
    totals = {}
    position = 0

    def walk(ancestors):
        # Each node: bytes below it (its path runs from the allocation outwards); a
        # node's own bytes are what its children do not account for.
        nonlocal position
        children, size, description = NODE.match(tree[position]).groups()
        position += 1
        path = ancestors + [description]
        counted = sum(walk(path) for _ in range(int(children)))
        own = int(size) - counted
        if own > 0 and ancestors:
            key = site(path)
            totals[key] = totals.get(key, 0) + own
        return int(size)

    walk([])
    return totals


def main(argv):
    if len(argv) == 5 and argv[1] == "--compare":
        server, sink, sessions = sites(argv[2]), sites(argv[3]), int(argv[4])
        total_server, total_sink = sum(server.values()), sum(sink.values())
        print(f"live heap per session: server {total_server / sessions:.0f} B, "
              f"bare sink {total_sink / sessions:.0f} B, "
              f"ratio {total_server / total_sink:.2f}x ({sessions} sessions each)")
        print(f"{'server':>8} {'sink':>8} {'diff':>8}  B per session, by site")
        keys = sorted(set(server) | set(sink), key=lambda k: -abs(server.get(k, 0) - sink.get(k, 0)))
        for key in keys:
            a, b = server.get(key, 0) / sessions, sink.get(key, 0) / sessions
            if max(a, b) >= 4:
                print(f"{a:8.1f} {b:8.1f} {a - b:+8.1f}  {key}")
    elif len(argv) == 3:
        totals, sessions = sites(argv[1]), int(argv[2])
        print(f"live heap per session: {sum(totals.values()) / sessions:.0f} B ({sessions} sessions)")
        for key, size in sorted(totals.items(), key=lambda kv: -kv[1]):
            if size / sessions >= 1:
                print(f"{size / sessions:8.1f}  {key}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
