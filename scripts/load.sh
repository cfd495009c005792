#!/usr/bin/env bash
# The load tests of issue 15 (Deliver 6) against `quarry serve` on loopback, on a 100k-chunk index,
# driven by Locust (tests/load/locustfile.py), reported by tests/load/report.py with PNG plots in
# docs/load/. Phases, in order (default: all but soak; docs/LOAD.md has the figures):
#   sustained  50 req/s of mixed searches for 10 minutes
#   spike      50 req/s, then 500 for 30 s, then 50 for a minute
#   ingest     50 req/s while the server indexes a batch of NFCorpus abstracts
#   soak       50 req/s for LOAD_SOAK_SECONDS (3600; the 24-hour run: 86400)
# (LOAD_SUSTAINED_SECONDS shortens the sustained phase, for a quick try of the script.)
#
#   bash scripts/load.sh [PHASE...]
#
# The index: built once into LOAD_INDEX (target/load-index) by the scale benchmark, NFCorpus
# chunks embedded by the real model and their jittered copies (cli/benches/scale.rs). The data:
# QUARRY_BENCH_DATA, or NFCorpus beside the checkout. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(sustained spike ingest)
data=${QUARRY_BENCH_DATA:-../shared/eval/nfcorpus}
index=${LOAD_INDEX:-target/load-index}
documents=${LOAD_DOCUMENTS:-1000}
[ -f "$data/queries.jsonl" ] || { echo "no queries.jsonl in $data (set QUARRY_BENCH_DATA)" >&2; exit 1; }
# Absolute: the benchmark that builds the index runs in its crate's folder, not here.
data=$(cd "$data" && pwd)

bash scripts/setup.sh >/dev/null
bash scripts/setup.sh --load-tools >/dev/null
tools=${XDG_CACHE_HOME:-$HOME/.cache}/quarry/load-tools/bin
cargo build -q --release -p quarry-cli
if [ ! -f "$index/state.db" ]; then
  echo "building the 100k-chunk index in $index (once; about ten minutes)"
  QUARRY_BENCH_KEEP=$PWD/$index QUARRY_BENCH_SIZES=100000 QUARRY_BENCH_DATA=$data \
    cargo bench -q -p quarry-cli --bench scale >/dev/null
fi

run=$(mktemp -d)
mkdir -p "$run/bucket/batch" "$run/bucket/single"
# The ingest phase's documents: NFCorpus abstracts as text files, not yet in the index.
"$tools/python" - "$data/corpus.jsonl" "$run/bucket/batch" "$documents" <<'PY'
import json, sys
corpus, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(corpus, encoding="utf-8") as f:
    for i, line in zip(range(n + 20), f):
        d = json.loads(line)
        # The last 20: indexed one at a time after the batch, for one document's latency.
        folder = out if i < n else out.replace("/batch", "/single")
        with open(f"{folder}/{d['_id']}.txt", "w", encoding="utf-8") as g:
            g.write(f"{d.get('title', '')}\n\n{d['text']}\n")
PY
# A copy per run: the ingest phase adds to it, and every run starts from the same 100k chunks.
cp -r "$index" "$run/index"
env -u QUARRY_BENCH_DATA target/release/quarry serve --dir "$run/bucket" --state "$run/index" --bind 127.0.0.1:0 >"$run/serve.out" 2>"$run/serve.err" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$run/index"' EXIT
for _ in $(seq 300); do grep -q listening "$run/serve.out" && break; sleep 0.2; done
url=$(sed -n 's/^listening on //p' "$run/serve.out")
[ -n "$url" ] || { cat "$run/serve.err" >&2; exit 1; }
# As a load balancer would: no traffic before the start-up work (the keyword index's load) is done.
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health/startup")" = 200 ] && break
  sleep 0.1
done
echo "quarry serve at $url (pid $server); run files in $run"

locust() { # PHASE SECONDS
  mkdir -p "$run/$1"
  LOAD_OUT=$run/$1 LOAD_PHASE=$1 LOAD_SECONDS=$2 LOAD_PID=$server \
    LOAD_QUERIES=$data/queries.jsonl \
    "$tools/locust" -f tests/load/locustfile.py --headless --host "$url" --only-summary \
    --loglevel WARNING >"$run/$1/locust.log" 2>&1 || true  # failures are the report's to count
  kill -0 $server 2>/dev/null || { echo "quarry serve died during $1" >&2; tail "$run/serve.err" >&2; exit 1; }
}
get() { curl -sf "$url$1"; }
field() { "$tools/python" -c "import json,sys; print(json.load(sys.stdin)$1)"; }

for phase in "${phases[@]}"; do
  echo "phase $phase: started $(date -u +%H:%M:%S)"
  case $phase in
    sustained)
      s=${LOAD_SUSTAINED_SECONDS:-600}
      locust sustained "$s"
      echo "{\"seconds\": $s}" >"$run/sustained/meta.json" ;;
    soak) s=${LOAD_SOAK_SECONDS:-3600}; locust soak "$s"; echo "{\"seconds\": $s}" >"$run/soak/meta.json" ;;
    spike)
      locust spike 0
      # The shape's clock starts with Locust's test: the spike is 60 to 90 s into it.
      t0=$(cat "$run/spike/started")
      "$tools/python" -c "import json; print(json.dumps({'spike': [$t0 + 60, $t0 + 90]}))" >"$run/spike/meta.json" ;;
    ingest)
      locust ingest 1800 &
      driver=$!
      sleep 60  # an idle minute first, the baseline when no sustained phase runs
      start=$(date +%s.%N)
      id=$(curl -sf -X POST "$url/v1/batches" -H 'content-type: application/json' -d '{"prefix": "batch/"}' | field "['batch']")
      until [ "$(get "/v1/batches/$id" | field "['status']")" = done ]; do sleep 1; done
      end=$(date +%s.%N)
      # One document at a time, as a user drops a file in: from the request to indexed, each its
      # own batch, while the searches go on.
      "$tools/python" - "$url" "$run/bucket/single" >"$run/ingest/single.json" <<'PY'
import json, os, sys, time, urllib.request
url, folder = sys.argv[1], sys.argv[2]
took = []
for name in sorted(os.listdir(folder)):
    body = json.dumps({"keys": [f"single/{name}"]}).encode()
    t = time.time()
    req = urllib.request.Request(f"{url}/v1/batches", data=body, headers={"content-type": "application/json"})
    batch = json.load(urllib.request.urlopen(req))["batch"]
    while json.load(urllib.request.urlopen(f"{url}/v1/batches/{batch}"))["status"] != "done":
        time.sleep(0.02)
    took.append((time.time() - t) * 1e3)
print(json.dumps({"single_ms": took}))
PY
      sleep 30
      pkill -TERM -f "locust -f tests/load/locustfile.py" || true
      wait $driver || true
      get /metrics >"$run/ingest/metrics.txt"
      get "/v1/batches/$id" >"$run/ingest/batch.json"
      echo "{\"batch\": [$start, $end], \"documents\": $documents}" >"$run/ingest/meta.json" ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
"$tools/python" tests/load/report.py "$run" docs/load | tee "$run/report.md"
