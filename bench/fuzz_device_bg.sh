# Runs the fuzz bundle (scripts/fuzz.sh --install, packed as build-carry/fuzz.tar.xz) on a
# device machine for longer than one 600 s call allows: `start T S` launches every target for T s
# detached and returns after S s; `finish`, called next while the machine is warm, collects.
# Phase "start": unpack, launch every target for $2 s detached, then sleep $3 s.
# Phase "finish": wait for the detached run to end, collect logs and crashes into $OUT.
set -u
B=$PWD/build-carry
export LD_LIBRARY_PATH=/tmp/qlf/lib
if [ "$1" = start ]; then
  rm -rf /tmp/qlf /tmp/fuzz-out; mkdir -p /tmp/qlf && tar xJf $B/fuzz.tar.xz -C /tmp/qlf
  ldd /tmp/qlf/bin/fuzz_server | grep -i "not found"
  date -u +%s > /tmp/fuzz.start
  setsid nohup /tmp/qlf/bin/fuzz.sh --bin /tmp/qlf/bin --seeds /tmp/qlf/share/quantlens/fuzz-corpus -t "$2" -j 10 -o /tmp/fuzz-out > /tmp/fuzz.log 2>&1 < /dev/null &
  sleep "$3"
  echo "after $3 s: $(pgrep -c -f 'qlf/bin/fuzz_') fuzzers running"; tail -3 /tmp/fuzz.log
else
  for i in $(seq 1 100); do pgrep -f 'qlf/bin/fuzz_' >/dev/null || break; sleep 3; done
  echo "finished $(( $(date -u +%s) - $(cat /tmp/fuzz.start) )) s after start"
  mkdir -p $OUT/logs; cp /tmp/fuzz-out/logs/*.log $OUT/logs/ 2>/dev/null; cp /tmp/fuzz.log $OUT/
  cat /tmp/fuzz.log | tail -15
  for t in /tmp/fuzz-out/corpus/*; do echo "$(basename $t) corpus $(ls $t | wc -l)"; done
  find /tmp/fuzz-out/crashes -type f | head; find /tmp/fuzz-out/crashes -type f | head -5 | xargs -r -I{} cp {} $OUT/
fi
