# Exits 0 six seconds after SIGTERM, leaving behind a child that ignores SIGTERM.
sh -c 'trap "" TERM; while :; do sleep 0.1; done' &
trap 'sleep 6; exit 0' TERM
echo app-ready
while :; do sleep 0.1; done
