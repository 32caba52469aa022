#!/bin/sh
# Sizzle's boot script for a rented virtual machine (Lambda Cloud): the VM starts bare, with the
# provider's SSH key authorized for its login user (`ubuntu`, with passwordless sudo) and its
# own sshd. Sizzle logs in with that key and runs this text as `/bin/sh -c <script>`, the inputs
# in the environment.
#
# In the foreground, within seconds: the inputs are checked and the session's key appended to
# the login user's authorized_keys (then the user's own keys, never instead of ours), where the
# VM's sshd reads them. The rest goes on in the background, detached from the SSH connection
# (SIGHUP ignored, input and output in files): the GPU is checked, Ollama installed if it is
# absent (the official installer), `ollama serve` started on 127.0.0.1 only unless a server
# already answers there, and the model pulled.
#
# Run again, it starts no second model server: a boot still running is left alone, and a model
# server that answers is used as it is.
#
# Environment:
#   SIZZLE_SSH_PUBLIC_KEY    required: Sizzle's OpenSSH public key for this session (one line)
#   SIZZLE_USER_SSH_KEYS     optional: the user's own public keys, one a line
#   SIZZLE_MODEL             optional: the Ollama model tag to pull
#   SIZZLE_STATE_DIR         status and logs (/var/lib/sizzle; made with sudo where needed)
#   OLLAMA_PORT              loopback port of the model server (11434)
#   SIZZLE_REQUIRE_GPU       1 (default): no GPU visible to nvidia-smi is a failed boot
#   SIZZLE_OLLAMA_INSTALLER  where Ollama's installer is fetched (https://ollama.com/install.sh)
#
# $SIZZLE_STATE_DIR/status holds one line naming the phase, as instance.sh writes it:
# checking-gpu, installing-model-server, starting-model-server, pulling-model, ready, or
# "failed: <why>". Logs there: boot.log, install.log, ollama.log, pull.log, gpus.csv. The keys
# are never printed.
set -eu

PULL_ATTEMPTS=3
PULL_RETRY_SECONDS=10
MODEL_SERVER_WAIT_SECONDS=120

state_dir=${SIZZLE_STATE_DIR:-/var/lib/sizzle}
ollama_port=${OLLAMA_PORT:-11434}
model=${SIZZLE_MODEL:-}
require_gpu=${SIZZLE_REQUIRE_GPU:-1}
installer=${SIZZLE_OLLAMA_INSTALLER:-https://ollama.com/install.sh}
boot_log=
ollama_pid=

log() {
    printf 'sizzle-vm-boot: %s\n' "$*" >&2
    if [ -n "$boot_log" ]; then
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$boot_log"
    fi
}

refuse() {
    printf 'sizzle-vm-boot: refusing to start: %s\n' "$*" >&2
    exit 2
}

set_status() {
    printf '%s\n' "$1" >"$state_dir/status.tmp"
    mv -f "$state_dir/status.tmp" "$state_dir/status"
    log "status: $1"
}

fail() {
    set_status "failed: $1"
    exit 1
}

# One OpenSSH public key line whose data parses: a known type, base64 data, an optional
# comment; no options (no command="..." prefix), no second line.
is_public_key() {
    case $1 in
        *'
'* | *'	'*) return 1 ;;
    esac
    printf '%s\n' "$1" | grep -Eq '^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) AAAA[A-Za-z0-9+/]+={0,3}( [[:print:]]*)?$' ||
        return 1
    printf '%s\n' "$1" | ssh-keygen -l -f /dev/stdin >/dev/null 2>&1
}

# --- inputs: refuse at once, before anything is changed ----------------------------------------
our_key=$(printf '%s' "${SIZZLE_SSH_PUBLIC_KEY:-}" | tr -d '\r')
[ -n "$our_key" ] || refuse "SIZZLE_SSH_PUBLIC_KEY is not set"
is_public_key "$our_key" ||
    refuse "SIZZLE_SSH_PUBLIC_KEY is not a single OpenSSH public key line"
case $ollama_port in
    '' | *[!0-9]*) refuse "OLLAMA_PORT is not a port number" ;;
esac
if [ "$ollama_port" -lt 1 ] || [ "$ollama_port" -gt 65535 ]; then
    refuse "OLLAMA_PORT is not a port number"
fi
case $model in
    -*) refuse "SIZZLE_MODEL is not a model tag" ;;
    *[!A-Za-z0-9._:/@-]*) refuse "SIZZLE_MODEL is not a model tag" ;;
esac
case $state_dir in
    /*) ;;
    *) refuse "SIZZLE_STATE_DIR must be an absolute path" ;;
esac
case ${HOME:-} in
    /*) ;;
    *) refuse "HOME is not an absolute path: whose authorized_keys?" ;;
esac

umask 077
# The login user is not root: a state dir it cannot make is made for it, with sudo.
if ! mkdir -p "$state_dir" 2>/dev/null; then
    sudo -n install -d -m 0700 -o "$(id -u)" -g "$(id -g)" "$state_dir" ||
        refuse "cannot make $state_dir"
fi
chmod 0700 "$state_dir"
boot_log=$state_dir/boot.log

# --- keys: ours first, then the user's, each once; whatever was there stays ---------------------
authorized=$HOME/.ssh/authorized_keys
mkdir -p "$HOME/.ssh"
chmod 0700 "$HOME/.ssh"
touch "$authorized"
chmod 0600 "$authorized"
authorize() {
    grep -qxF -- "$1" "$authorized" || printf '%s\n' "$1" >>"$authorized"
}
authorize "$our_key"
line_no=0
printf '%s\n' "${SIZZLE_USER_SSH_KEYS:-}" | tr -d '\r' | while IFS= read -r line; do
    line_no=$((line_no + 1))
    case $line in '' | '#'*) continue ;; esac
    if is_public_key "$line"; then
        authorize "$line"
    else
        log "skipped SIZZLE_USER_SSH_KEYS line $line_no: not an OpenSSH public key"
    fi
done
log "keys authorized for $(id -un)"

# --- one boot at a time --------------------------------------------------------------------------
lock=$state_dir/boot.lock
if ! mkdir "$lock" 2>/dev/null; then
    running=$(cat "$lock/pid" 2>/dev/null || true)
    if [ -z "$running" ] || kill -0 "$running" 2>/dev/null; then
        log "a boot is already running (pid ${running:-starting}): nothing more to do"
        exit 0
    fi
    log "the boot before (pid $running) ended: booting again"
    rm -rf "$lock"
    mkdir "$lock"
fi

# --- the rest, in the background -----------------------------------------------------------------
model_server_answers() {
    ollama list >/dev/null 2>&1
}

boot_in_background() {
    trap 'rm -rf "$lock"' EXIT
    trap '[ -z "$ollama_pid" ] || kill "$ollama_pid" 2>/dev/null; exit 143' TERM INT

    gpu_count=0
    if command -v nvidia-smi >/dev/null 2>&1 &&
        nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader \
            >"$state_dir/gpus.csv" 2>>"$boot_log"; then
        gpu_count=$(grep -c . "$state_dir/gpus.csv" || true)
    fi
    log "GPUs visible: $gpu_count"
    if [ "$gpu_count" -eq 0 ] && [ "$require_gpu" = 1 ]; then
        fail "no GPU visible to nvidia-smi"
    fi

    if ! command -v ollama >/dev/null 2>&1; then
        set_status installing-model-server
        if ! {
            curl -fsSL --retry 3 -o "$state_dir/ollama-install.sh" "$installer" &&
                sh "$state_dir/ollama-install.sh"
        } </dev/null >>"$state_dir/install.log" 2>&1; then
            fail "could not install Ollama (see install.log)"
        fi
        command -v ollama >/dev/null 2>&1 || fail "Ollama installed but no ollama on PATH"
        # The installer starts its own service where systemd runs; ours is the one server,
        # started below on loopback with its logs here.
        if command -v systemctl >/dev/null 2>&1; then
            # the log is ours, not root's: sudo runs the command only
            # shellcheck disable=SC2024
            sudo -n systemctl disable --now ollama >>"$state_dir/install.log" 2>&1 || true
        fi
    fi

    set_status starting-model-server
    OLLAMA_HOST=127.0.0.1:$ollama_port
    export OLLAMA_HOST
    if model_server_answers; then
        log "a model server already answers on 127.0.0.1:$ollama_port: using it"
    else
        ollama serve </dev/null >>"$state_dir/ollama.log" 2>&1 &
        ollama_pid=$!
        waited=0
        until model_server_answers; do
            if ! kill -0 "$ollama_pid" 2>/dev/null; then
                ollama_pid=
                fail "ollama serve exited at start (see ollama.log)"
            fi
            if [ "$waited" -ge "$MODEL_SERVER_WAIT_SECONDS" ]; then
                kill "$ollama_pid" 2>/dev/null || true
                ollama_pid=
                fail "ollama serve did not answer within ${MODEL_SERVER_WAIT_SECONDS}s"
            fi
            sleep 1
            waited=$((waited + 1))
        done
        log "model server answers on 127.0.0.1:$ollama_port"
    fi

    if [ -n "$model" ]; then
        set_status pulling-model
        attempt=1
        until ollama pull "$model" </dev/null >>"$state_dir/pull.log" 2>&1; do
            if [ "$attempt" -ge "$PULL_ATTEMPTS" ]; then
                fail "could not pull $model after $PULL_ATTEMPTS attempts (see pull.log)"
            fi
            log "pull of $model failed (attempt $attempt of $PULL_ATTEMPTS); retrying"
            sleep $((PULL_RETRY_SECONDS * attempt))
            attempt=$((attempt + 1))
        done
    fi
    set_status ready

    # The server this boot started: should it stop, the status says so.
    if [ -n "$ollama_pid" ]; then
        status=0
        wait "$ollama_pid" || status=$?
        ollama_pid=
        fail "ollama serve exited with status $status"
    fi
}

set_status checking-gpu
trap '' HUP # the SSH connection that started this boot ends before it does
# exec, not a redirection of the call: dash would keep copies of the SSH channel's descriptors
# to restore after the call, and the channel would stay open until the boot ends
{
    exec </dev/null >>"$state_dir/console.log" 2>&1
    boot_in_background
} &
printf '%s\n' "$!" >"$lock/pid"
log "booting in the background (pid $!): model server 127.0.0.1:$ollama_port, model ${model:-none}"
