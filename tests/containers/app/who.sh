# Who the app runs as.
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ',') home=$HOME"
