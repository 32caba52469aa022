#!/bin/sh
# Sizzle's boot script for a rented container (Vast.ai: onstart "/bin/sh" with args
# ["-c", <this text>]; RunPod: the pod's start command). It is the container's whole job:
# sshd with Sizzle's key (and the user's own keys, never instead of ours), `ollama serve` on
# 127.0.0.1 only (Sizzle reaches it through an SSH tunnel), the model pulled, then it stays in
# the foreground for as long as `ollama serve` runs.
#
# Environment:
#   SIZZLE_SSH_PUBLIC_KEY  required: Sizzle's OpenSSH public key for this session (one line)
#   SIZZLE_USER_SSH_KEYS   optional: the user's own public keys, one a line
#   SIZZLE_MODEL           optional: the Ollama model tag to pull
#   SIZZLE_SSH_PORT        port sshd listens on (22)
#   SIZZLE_STATE_DIR       sshd config, host keys, authorized_keys, status and logs
#                          (/var/lib/sizzle)
#   OLLAMA_PORT            loopback port of the model server (11434)
#   SIZZLE_REQUIRE_GPU     1 (default): no GPU visible to nvidia-smi is a failed boot
#
# $SIZZLE_STATE_DIR/status holds one line naming the phase: installing-ssh, starting-ssh,
# checking-gpu, starting-model-server, pulling-model, ready, or "failed: <why>". Logs there:
# boot.log (this script), sshd.log, ollama.log, pull.log (the pull's progress), gpus.csv.
# The keys are never printed.
set -eu

PULL_ATTEMPTS=3
PULL_RETRY_SECONDS=10
MODEL_SERVER_WAIT_SECONDS=120
SSHD_WAIT_SECONDS=20

state_dir=${SIZZLE_STATE_DIR:-/var/lib/sizzle}
ssh_port=${SIZZLE_SSH_PORT:-22}
ollama_port=${OLLAMA_PORT:-11434}
model=${SIZZLE_MODEL:-}
require_gpu=${SIZZLE_REQUIRE_GPU:-1}
boot_log=
sshd_pid=
ollama_pid=

log() {
    printf 'sizzle-boot: %s\n' "$*" >&2
    if [ -n "$boot_log" ]; then
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$boot_log"
    fi
}

refuse() {
    printf 'sizzle-boot: refusing to start: %s\n' "$*" >&2
    exit 2
}

# One OpenSSH public key line: a known type, base64 data, an optional comment; no options
# (no command="..." prefix) and no second line.
is_public_key() {
    case $1 in
        *'
'* | *'	'*) return 1 ;;
    esac
    printf '%s\n' "$1" | grep -Eq '^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) AAAA[A-Za-z0-9+/]+={0,3}( [[:print:]]*)?$'
}

is_port() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

set_status() {
    printf '%s\n' "$1" >"$state_dir/status.tmp"
    mv -f "$state_dir/status.tmp" "$state_dir/status"
    log "status: $1"
}

stop_children() {
    for pid in $ollama_pid $sshd_pid; do
        kill "$pid" 2>/dev/null || true
    done
}

# shellcheck disable=SC2317 # reached through the traps below
on_signal() {
    log "stopping on $1"
    stop_children
    exit 143
}

# A failure after sshd is up: record it and keep sshd in the foreground, so that Sizzle can
# read the status and the logs over SSH before it destroys the instance.
fail_and_hold() {
    set_status "failed: $1"
    if [ -n "$sshd_pid" ]; then
        wait "$sshd_pid" || true
    fi
    exit 1
}

# --- inputs: refuse at once, before anything is installed or started -----------------------
our_key=${SIZZLE_SSH_PUBLIC_KEY:-}
[ -n "$our_key" ] || refuse "SIZZLE_SSH_PUBLIC_KEY is not set"
our_key=$(printf '%s' "$our_key" | tr -d '\r')
# $(...) drops trailing newlines; anything else on a second line is refused.
is_public_key "$our_key" ||
    refuse "SIZZLE_SSH_PUBLIC_KEY is not a single OpenSSH public key line"
is_port "$ssh_port" || refuse "SIZZLE_SSH_PORT is not a port number"
is_port "$ollama_port" || refuse "OLLAMA_PORT is not a port number"
case $model in
    -*) refuse "SIZZLE_MODEL is not a model tag" ;;
    *[!A-Za-z0-9._:/@-]*) refuse "SIZZLE_MODEL is not a model tag" ;;
esac
case $state_dir in
    /*) ;;
    *) refuse "SIZZLE_STATE_DIR must be an absolute path" ;;
esac

umask 077
mkdir -p "$state_dir/ssh"
chmod 0700 "$state_dir" "$state_dir/ssh"
boot_log=$state_dir/boot.log
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_signal HUP' HUP
log "booting: ssh port $ssh_port, model server 127.0.0.1:$ollama_port, model ${model:-none}"

# --- sshd ---------------------------------------------------------------------------------
find_sshd() {
    for candidate in "$(command -v sshd 2>/dev/null || true)" /usr/sbin/sshd /usr/bin/sshd; do
        case $candidate in
            /*) if [ -x "$candidate" ]; then
                printf '%s\n' "$candidate"
                return 0
            fi ;;
        esac
    done
    return 1
}

if ! sshd=$(find_sshd); then
    set_status installing-ssh
    command -v apt-get >/dev/null 2>&1 || {
        set_status "failed: no sshd and no apt-get to install openssh-server"
        exit 1
    }
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                openssh-server
    } >>"$state_dir/install.log" 2>&1; then
        set_status "failed: could not install openssh-server (see install.log)"
        exit 1
    fi
    sshd=$(find_sshd) || {
        set_status "failed: openssh-server installed but no sshd found"
        exit 1
    }
fi

set_status starting-ssh
# The key's data must also parse, not only look right.
printf '%s\n' "$our_key" >"$state_dir/ssh/check.pub"
if ! ssh-keygen -l -f "$state_dir/ssh/check.pub" >/dev/null 2>&1; then
    rm -f "$state_dir/ssh/check.pub"
    set_status "failed: SIZZLE_SSH_PUBLIC_KEY does not parse"
    refuse "SIZZLE_SSH_PUBLIC_KEY does not parse as an OpenSSH public key"
fi

# Ours first; the user's keys after it, each checked the same way, a bad one skipped.
{
    printf '%s\n' "$our_key"
    if [ -n "${SIZZLE_USER_SSH_KEYS:-}" ]; then
        line_no=0
        printf '%s\n' "$SIZZLE_USER_SSH_KEYS" | tr -d '\r' | while IFS= read -r line; do
            line_no=$((line_no + 1))
            case $line in '' | '#'*) continue ;; esac
            printf '%s\n' "$line" >"$state_dir/ssh/check.pub"
            if is_public_key "$line" &&
                ssh-keygen -l -f "$state_dir/ssh/check.pub" >/dev/null 2>&1; then
                printf '%s\n' "$line"
            else
                log "skipped SIZZLE_USER_SSH_KEYS line $line_no: not an OpenSSH public key"
            fi
        done
    fi
} >"$state_dir/authorized_keys.tmp"
rm -f "$state_dir/ssh/check.pub"
chmod 0600 "$state_dir/authorized_keys.tmp"
mv -f "$state_dir/authorized_keys.tmp" "$state_dir/authorized_keys"

for kind in ed25519 ecdsa; do
    if [ ! -s "$state_dir/ssh/ssh_host_${kind}_key" ]; then
        rm -f "$state_dir/ssh/ssh_host_${kind}_key" "$state_dir/ssh/ssh_host_${kind}_key.pub"
        ssh-keygen -q -t "$kind" -N '' -C "sizzle-instance" \
            -f "$state_dir/ssh/ssh_host_${kind}_key" >/dev/null
    fi
done

# Only the account this script runs as may log in (sshd without root cannot switch users).
login_user=$(id -un)
cat >"$state_dir/sshd_config" <<EOF
# Written by Sizzle's boot script; rewritten at every boot.
Port $ssh_port
HostKey $state_dir/ssh/ssh_host_ed25519_key
HostKey $state_dir/ssh/ssh_host_ecdsa_key
PidFile $state_dir/sshd.pid
AuthorizedKeysFile $state_dir/authorized_keys
AllowUsers $login_user
PubkeyAuthentication yes
AuthenticationMethods publickey
PasswordAuthentication no
PermitEmptyPasswords no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin prohibit-password
UsePAM no
AllowTcpForwarding local
AllowStreamLocalForwarding no
AllowAgentForwarding no
GatewayPorts no
PermitTunnel no
X11Forwarding no
PermitUserEnvironment no
LoginGraceTime 30
MaxAuthTries 4
ClientAliveInterval 30
ClientAliveCountMax 4
PrintMotd no
Subsystem sftp internal-sftp
EOF
chmod 0600 "$state_dir/sshd_config"

mkdir -p /run/sshd
chmod 0755 /run/sshd
if ! "$sshd" -t -f "$state_dir/sshd_config" >>"$state_dir/sshd.log" 2>&1; then
    set_status "failed: sshd refused its config (see sshd.log)"
    exit 1
fi
rm -f "$state_dir/sshd.pid"
"$sshd" -D -f "$state_dir/sshd_config" -E "$state_dir/sshd.log" </dev/null &
sshd_pid=$!
# sshd writes its PidFile once it listens.
waited=0
until [ -s "$state_dir/sshd.pid" ]; do
    if ! kill -0 "$sshd_pid" 2>/dev/null; then
        set_status "failed: sshd exited at start (see sshd.log)"
        exit 1
    fi
    if [ "$waited" -ge $((SSHD_WAIT_SECONDS * 4)) ]; then
        stop_children
        set_status "failed: sshd did not start listening (see sshd.log)"
        exit 1
    fi
    sleep 0.25 2>/dev/null || sleep 1
    waited=$((waited + 1))
done
log "sshd listening on port $ssh_port"

# --- GPU ----------------------------------------------------------------------------------
set_status checking-gpu
gpu_count=0
if command -v nvidia-smi >/dev/null 2>&1 &&
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader \
        >"$state_dir/gpus.csv" 2>>"$boot_log"; then
    gpu_count=$(grep -c . "$state_dir/gpus.csv" || true)
fi
log "GPUs visible: $gpu_count"
if [ "$gpu_count" -eq 0 ] && [ "$require_gpu" = 1 ]; then
    fail_and_hold "no GPU visible to nvidia-smi"
fi

# --- model server, on loopback only -------------------------------------------------------
set_status starting-model-server
command -v ollama >/dev/null 2>&1 || fail_and_hold "no ollama on PATH"
# The ollama/ollama image sets OLLAMA_HOST=0.0.0.0:11434; ours replaces it, for serve and
# for the ollama commands below that talk to it.
OLLAMA_HOST=127.0.0.1:$ollama_port
export OLLAMA_HOST
ollama serve </dev/null >>"$state_dir/ollama.log" 2>&1 &
ollama_pid=$!
waited=0
until ollama list >/dev/null 2>&1; do
    if ! kill -0 "$ollama_pid" 2>/dev/null; then
        ollama_pid=
        fail_and_hold "ollama serve exited at start (see ollama.log)"
    fi
    if [ "$waited" -ge "$MODEL_SERVER_WAIT_SECONDS" ]; then
        kill "$ollama_pid" 2>/dev/null || true
        ollama_pid=
        fail_and_hold "ollama serve did not answer within ${MODEL_SERVER_WAIT_SECONDS}s"
    fi
    sleep 1
    waited=$((waited + 1))
done
log "model server answers on 127.0.0.1:$ollama_port"

# --- the model ------------------------------------------------------------------------------
pulled=1
if [ -n "$model" ]; then
    set_status pulling-model
    attempt=1
    until ollama pull "$model" </dev/null >>"$state_dir/pull.log" 2>&1; do
        if [ "$attempt" -ge "$PULL_ATTEMPTS" ]; then
            pulled=0
            break
        fi
        log "pull of $model failed (attempt $attempt of $PULL_ATTEMPTS); retrying"
        sleep $((PULL_RETRY_SECONDS * attempt))
        attempt=$((attempt + 1))
    done
fi
if [ "$pulled" = 1 ]; then
    set_status ready
else
    # The model server stays up: Sizzle reads the status and pull.log, and decides.
    set_status "failed: could not pull $model after $PULL_ATTEMPTS attempts (see pull.log)"
fi

# --- foreground: as long as the model server runs ------------------------------------------
status=0
wait "$ollama_pid" || status=$?
ollama_pid=
set_status "failed: ollama serve exited with status $status"
stop_children
[ "$status" -ne 0 ] || status=1
exit "$status"
