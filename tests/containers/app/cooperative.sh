# Exits 0 on SIGTERM.
trap 'exit 0' TERM
echo app-ready
while :; do sleep 0.1; done
