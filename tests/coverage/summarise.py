"""The coverage table (scripts/coverage.sh): per crate, the lines of its own src/ that its own
tests ran, from cargo-tarpaulin's JSON reports, and its three least covered files.

    python3 summarise.py COVERAGE_DIR CRATE...
    python3 summarise.py --one REPORT_DIR CRATE...   # one workspace-wide report for every crate
"""

import json
import os
import subprocess
import sys


def crate_dirs():
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--no-deps", "--format-version", "1"]))
    return {p["name"]: os.path.join(os.path.dirname(p["manifest_path"]), "src") for p in meta["packages"]}


def main(out, crates, one=False):
    dirs = crate_dirs()
    print("| crate | lines covered | of | % | least covered files (covered/coverable) |")
    print("| --- | --- | --- | --- | --- |")
    for crate in crates:
        report = os.path.join(out, "tarpaulin-report.json") if one else os.path.join(out, crate, "tarpaulin-report.json")
        if not os.path.isfile(report):
            print(f"| {crate} | no report | | | |")
            continue
        with open(report, encoding="utf-8") as f:
            files = json.load(f)["files"]
        src = dirs[crate] + os.sep
        mine = [f for f in files if os.path.join(*f["path"]).replace("//", "/").startswith(src)]
        covered = sum(f["covered"] for f in mine)
        coverable = sum(f["coverable"] for f in mine)
        worst = sorted((f for f in mine if f["coverable"]), key=lambda f: f["covered"] / f["coverable"])[:3]
        names = ", ".join(f"`{os.path.join(*f['path'])[len(src):]}` {f['covered']}/{f['coverable']}" for f in worst)
        pct = 100 * covered / coverable if coverable else float("nan")
        print(f"| {crate} | {covered} | {coverable} | {pct:.1f} | {names} |")


if __name__ == "__main__":
    if sys.argv[1] == "--one":
        main(sys.argv[2], sys.argv[3:], one=True)
    else:
        main(sys.argv[1], sys.argv[2:])
