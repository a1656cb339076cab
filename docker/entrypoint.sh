#!/bin/sh
# meshfarm's container entry. Without MESHFARM_ROLE it is plain `meshfarm "$@"` (`docker run meshfarm status`).
# With a role it sets up the demo mesh on first start, through a folder all containers share ($MESHFARM_SHARED):
#   coordinator   first start: `meshfarm init`; then runs the coordinator and, once it answers, writes a one-time
#                 agent invite for each name in MESHFARM_INVITES that has not joined yet: $SHARED/invites/NAME.invite
#   agent         first start: waits for its invite (MESHFARM_NAME), `meshfarm join`s with it, deletes it and
#                 marks $SHARED/joined/NAME; then runs `meshfarm agent --hostname NAME`
#   slurm-bridge  starts munge and a one-node Slurm (slurmctld, slurmd), joins as an agent does, then runs
#                 `meshfarm bridge slurm --partition ${MESHFARM_PARTITION:-debug}`
# Extra arguments go to the service's command. Later starts find their state in $MESHFARM_HOME and skip the setup.
# Settings: MESHFARM_HOME (state), MESHFARM_SHARED (/shared), MESHFARM_LISTEN (/ip4/0.0.0.0/tcp/7341),
# MESHFARM_INVITE_TTL (24h), MESHFARM_USER (as root: run meshfarm as this user), MESHFARM (the meshfarm command).
set -eu

MESHFARM=${MESHFARM:-meshfarm}
SHARED=${MESHFARM_SHARED:-/shared}
ROLE=${MESHFARM_ROLE:-}
HOME_DIR=${MESHFARM_HOME:-$HOME/.meshfarm}

say () { echo "entrypoint ($ROLE): $*" >&2; }

# Becomes meshfarm (as MESHFARM_USER when root): in the background (`mf_exec ... &`) the signal then reaches
# meshfarm itself, not a subshell that would die and leave it running.
mf_exec () {
  if [ "$(id -u)" = 0 ] && [ -n "${MESHFARM_USER:-}" ]; then
    exec runuser -u "$MESHFARM_USER" -- env MESHFARM_HOME="$HOME_DIR" "$MESHFARM" "$@"
  fi
  MESHFARM_HOME="$HOME_DIR" exec "$MESHFARM" "$@"
}
mf () { ( mf_exec "$@" ); }

if [ -z "$ROLE" ]; then exec "$MESHFARM" "$@"; fi

# A name goes into file names and the coordinator's access list: letters, digits, dot, dash, underscore.
valid_name () { case "$1" in ''|*[!A-Za-z0-9._-]*) return 1 ;; *) return 0 ;; esac; }

# Waits for $child and exits with its status. A trapped signal interrupts wait (status 128+n): wait again until
# the child is really gone (kill -0 still succeeds on an exited child not yet reaped), so its own status counts.
wait_child () {
  while :; do
    status=0
    wait "$child" || status=$?
    kill -0 "$child" 2>/dev/null || break
  done
  exit "$status"
}

# Runs meshfarm in the background and waits for it; SIGTERM/SIGINT are passed on so it stops cleanly.
run_service () {
  mf_exec "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null' TERM INT
  wait_child
}

join_with_invite () {
  name=${MESHFARM_NAME:?MESHFARM_NAME must name this agent}
  valid_name "$name" || { say "MESHFARM_NAME '$name': use letters, digits, '.', '-' or '_'"; exit 2; }
  if [ -f "$HOME_DIR/mesh.json" ]; then return 0; fi
  invite="$SHARED/invites/$name.invite"
  say "waiting for $invite"
  waited=0
  while [ ! -s "$invite" ]; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "${MESHFARM_INVITE_WAIT:-600}" ]; then say "no invite after ${waited}s: is the coordinator up?"; exit 3; fi
  done
  mf join "$invite"
  rm -f "$invite"
  mkdir -p "$SHARED/joined"
  : > "$SHARED/joined/$name"
  say "joined as $name"
}

case "$ROLE" in
  coordinator)
    if [ ! -f "$HOME_DIR/mesh.json" ]; then mf init --no-mdns; fi
    mkdir -p "$SHARED/invites" "$SHARED/joined"
    mf_exec coordinator --listen "${MESHFARM_LISTEN:-/ip4/0.0.0.0/tcp/7341}" "$@" &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null' TERM INT
    # Invites need the coordinator to answer; then one per agent that has neither joined nor an invite waiting.
    until mf ping > /dev/null 2>&1; do
      kill -0 "$child" 2>/dev/null || { wait "$child" || exit $?; exit 1; }
      sleep 1
    done
    for name in ${MESHFARM_INVITES:-}; do
      valid_name "$name" || { say "MESHFARM_INVITES: '$name' is not a valid name"; continue; }
      [ -e "$SHARED/joined/$name" ] || [ -s "$SHARED/invites/$name.invite" ] && continue
      if mf invite --role agent --ttl "${MESHFARM_INVITE_TTL:-24h}" > "$SHARED/invites/$name.invite.tmp"; then
        mv "$SHARED/invites/$name.invite.tmp" "$SHARED/invites/$name.invite"
        say "invite for $name written"
      else
        say "could not write an invite for $name (see above); the coordinator keeps running"
      fi
    done
    wait_child
    ;;
  agent)
    join_with_invite
    run_service agent --hostname "$MESHFARM_NAME" "$@"
    ;;
  slurm-bridge)
    if [ "$(id -u)" = 0 ]; then
      # One-node Slurm: munge authenticates slurmctld and slurmd to each other.
      [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
      chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
      mkdir -p /run/munge && chown munge:munge /run/munge
      runuser -u munge -- munged
      mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm && chown slurm:slurm /var/spool/slurmctld /var/log/slurm
      slurmctld
      slurmd
    fi
    join_with_invite
    run_service bridge slurm --partition "${MESHFARM_PARTITION:-debug}" "$@"
    ;;
  *)
    say "unknown MESHFARM_ROLE '$ROLE': coordinator, agent or slurm-bridge"
    exit 2
    ;;
esac
