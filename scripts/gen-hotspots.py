#!/usr/bin/env python3
"""Write N hotspots as NDJSON (one HotspotInput per line) for the import benchmark.

   scripts/gen-hotspots.py N [START] > hotspots.ndjson

Hotspots are spread uniformly over land-ish latitudes (-60..70) with a fixed
seed, ids "h<index>" from START, so several files can be concatenated or sent
as separate requests (one request may carry at most 256 MiB)."""
import random, sys

n = int(sys.argv[1]); start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
rng = random.Random(42 + start)
w = sys.stdout.write
for i in range(start, start + n):
    w('{"id":"h%d","lat":%.6f,"lon":%.6f,"tickets":%d,"reward":%d,"points":%d}\n'
      % (i, rng.uniform(-60, 70), rng.uniform(-180, 180), rng.randint(1, 100), rng.randint(1, 50), rng.randint(1, 20)))
