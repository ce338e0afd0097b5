#!/usr/bin/env python3
"""Reads meson's testlog.json of each build dir and prints 'N passed, N failed'.
A build that failed to compile counts as one failure. Skipped tests (exit 77)
are listed but counted as neither."""
import json, os, sys

passed = failed = skipped = 0
for b in sys.argv[1:]:
    if os.path.exists(b + ".buildfail.json"):
        failed += 1
        print(f"FAIL  {b}: build failed")
        continue
    log = os.path.join(b, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        failed += 1
        print(f"FAIL  {b}: no test log")
        continue
    with open(log) as f:
        for line in f:
            t = json.loads(line)
            r = t.get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r == "SKIP":
                skipped += 1
                print(f"SKIP  {b}: {t['name']}")
            else:
                failed += 1
                print(f"FAIL  {b}: {t['name']} ({r})")
if skipped:
    print(f"{skipped} skipped")
print(f"{passed} passed, {failed} failed")
