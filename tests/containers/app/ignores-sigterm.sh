# Ignores SIGTERM: only SIGKILL ends it.
trap '' TERM
echo app-ready
while :; do sleep 0.1; done
