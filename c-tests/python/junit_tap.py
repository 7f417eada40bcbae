"""Turn a pytest JUnit XML report into the lines c-tests/run.sh counts.

Usage: python3 junit_tap.py REPORT.xml
Prints "ok - NAME" for a passed test, "not ok - NAME" for a failed or
erroring one (collection errors included), "SKIP - NAME: REASON" for a
skipped one and for an expected failure (xfail, a known defect that the
test documents). Exits 1 if the report is missing or has no test at all.
"""

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"not ok - pytest wrote no readable report ({e})")
        return 1
    cases = root.iter("testcase")
    n = 0
    for case in cases:
        n += 1
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name', '?')}" if module else case.get("name", "?")
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        skipped = case.find("skipped")
        if failed is not None:
            msg = (failed.get("message") or "").splitlines()[0:1]
            print(f"not ok - {name}" + (f": {msg[0][:200]}" if msg else ""))
        elif skipped is not None:
            reason = (skipped.get("message") or skipped.get("type") or "").splitlines()[0:1]
            print(f"SKIP - {name}" + (f": {reason[0][:300]}" if reason else ""))
        else:
            print(f"ok - {name}")
    if n == 0:
        print("not ok - pytest ran no test")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
