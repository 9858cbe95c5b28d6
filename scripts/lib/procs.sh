# Sourced by the scripts that start processes: a temp folder ($work) and the background processes
# listed in $pids are removed and stopped on exit, however the script ends. A script with more to
# undo defines on_exit after sourcing this. free_port prints a free loopback port.
work=$(mktemp -d -t aiops.XXXXXX)
pids=()
on_exit() { :; }
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  on_exit
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
