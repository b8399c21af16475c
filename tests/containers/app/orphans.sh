# Makes 50 orphans (their parent exits at once, so they are handed to PID 1), waits until they
# have ended, then prints how many zombies PID 1 left unreaped.
i=0
while [ $i -lt 50 ]; do (sleep 0.05 &); i=$((i + 1)); done
sleep 1
echo "zombies=$(grep -h '' /proc/[0-9]*/stat 2>/dev/null | sed 's/^.*) //' | grep -c '^Z 1 ')"
