#!/usr/bin/env bash
# Pendra worker installer.
#
#   curl -fsSL https://get.pendra.ai/worker | bash            # install, then open the setup app
#   curl -fsSL https://get.pendra.ai/worker | bash -s -- --no-ui --key-file ./worker.key
#   ./get.sh                                                  # from a checkout: installs the checkout
#
# What it does, all as the current user: finds Python >= 3.10, makes a virtualenv in
# ~/.pendra/venv, installs pendra-worker with the llama.cpp build that fits this machine (CUDA,
# Metal, Vulkan or CPU), links `pendra` into ~/.local/bin and starts it. It never installs system
# packages or drivers; when something is missing it prints the command to run. Re-running upgrades
# in place and keeps your configuration, worker key and models. `--uninstall` removes it again.
#
# The whole script is inside main(), called on the last line, so a truncated download runs nothing.
# Every Python it runs is isolated (`python -I`, from a neutral directory), so a `worker/`,
# `installer/` or `pip/` folder in the directory you run it from is never imported.

if [ -z "${BASH_VERSION:-}" ]; then
  echo "get.sh needs bash: curl -fsSL https://get.pendra.ai/worker | bash" >&2
  exit 1
fi

main() {
  set -euo pipefail

  # ------------------------------------------------------------------------------------------ ui
  local bold="" dim="" red="" yellow="" green="" reset=""
  if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    bold=$'\033[1m' dim=$'\033[2m' red=$'\033[31m' yellow=$'\033[33m' green=$'\033[32m' reset=$'\033[0m'
  fi
  say() { printf '%s\n' "$*" >&2; }
  step() { printf '%s==>%s %s\n' "$bold" "$reset" "$*" >&2; }
  note() { printf '    %s%s%s\n' "$dim" "$*" "$reset" >&2; }
  warn() { printf '%swarning:%s %s\n' "$yellow" "$reset" "$*" >&2; }
  die() {
    printf '%serror:%s %s\n' "$red" "$reset" "$1" >&2
    [ $# -gt 1 ] && printf '  → %s\n' "${@:2}" >&2
    exit 1
  }
  truthy() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
      1 | true | yes | on) return 0 ;;
      *) return 1 ;;
    esac
  }

  usage() {
    cat <<'EOF'
Pendra worker installer

Usage: get.sh [options]          (or: curl -fsSL https://get.pendra.ai/worker | bash -s -- [options])

  -y, --yes            non-interactive: no questions asked
      --no-ui          install, then run the worker headless (as a service where one is available)
      --docker         install, then run the worker in Docker (`pendra stack up`; needs Docker,
                       which get.sh never installs)
      --no-start       install only; start nothing
      --key-file FILE  store the worker key from FILE (kept 0600, in ~/.pendra/config.yaml)
      --version V      install pendra-worker version V
      --uninstall      remove the venv, the `pendra` link and this installation's service
                       (keeps config, key and models); lists what goes and asks first
      --purge          with --uninstall: also remove config, keys (the worker key and its
                       backups, the workload key), the sandbox's files, logs and cache
      --remove-models  with --uninstall: also remove the models pendra downloaded (those with
                       the install record pendra writes beside them); your own files stay
      --remove-all-models
                       with --uninstall: also remove every *.gguf in the models directory,
                       including ones you put there yourself (other files and folders stay)
  -h, --help           this help

Environment: PENDRA_YES, PENDRA_NO_UI, PENDRA_DOCKER, PENDRA_NO_START, PENDRA_KEY_FILE, PENDRA_VERSION (as the
flags); PENDRA_HOME (default ~/.pendra); PENDRA_PYTHON (interpreter to use); PENDRA_BIN_DIR
(default ~/.local/bin); PENDRA_INSTALL_SOURCE (a checkout, a wheel or a pip requirement to install
instead of the published package); PENDRA_ACCEL (auto|cpu|cuda|metal|vulkan); PENDRA_WHEEL_INDEX
(llama-cpp-python wheel index base URL, or "off" to always build from source).
EOF
  }

  # ---------------------------------------------------------------------------------- arguments
  local yes=0 no_ui=0 docker=0 no_start=0 uninstall=0 purge=0 remove_models=0 remove_all_models=0
  local key_file="${PENDRA_KEY_FILE:-}" version="${PENDRA_VERSION:-}"
  truthy "${PENDRA_YES:-}" && yes=1
  truthy "${PENDRA_NO_UI:-}" && no_ui=1
  truthy "${PENDRA_DOCKER:-}" && docker=1
  truthy "${PENDRA_NO_START:-}" && no_start=1
  while [ $# -gt 0 ]; do
    case "$1" in
      -y | --yes) yes=1 ;;
      --no-ui) no_ui=1 ;;
      --docker) docker=1 ;;
      --no-start) no_start=1 ;;
      --uninstall) uninstall=1 ;;
      --purge) purge=1 ;;
      --remove-models) remove_models=1 ;;
      --remove-all-models) remove_models=1 remove_all_models=1 ;;
      --key-file)
        [ $# -ge 2 ] || die "--key-file needs a file name" "get.sh --key-file ./worker.key"
        key_file="$2"
        shift
        ;;
      --key-file=*) key_file="${1#*=}" ;;
      --version)
        [ $# -ge 2 ] || die "--version needs a version" "get.sh --version 0.1.0"
        version="$2"
        shift
        ;;
      --version=*) version="${1#*=}" ;;
      -h | --help)
        usage
        return 0
        ;;
      *) die "unknown option: $1" "get.sh --help lists the options" ;;
    esac
    shift
  done
  if [ "$uninstall" = 0 ] && { [ "$purge" = 1 ] || [ "$remove_models" = 1 ]; }; then
    die "--purge, --remove-models and --remove-all-models only go with --uninstall"
  fi
  if [ "$docker" = 1 ] && { [ "$no_start" = 1 ] || [ "$uninstall" = 1 ]; }; then
    die "--docker starts the worker in Docker; it does not go with --no-start or --uninstall" \
      "after an install, start it any time with: pendra stack up"
  fi
  # --docker is a headless start, like --no-ui, in a container instead of a service.
  [ "$docker" = 1 ] && no_ui=1

  # --------------------------------------------------------------------------------- paths
  # Absolute paths: every Python below runs from a neutral directory, not from this one.
  absolute_path() {
    case "$1" in
      /*) printf '%s' "$1" ;;
      *) printf '%s/%s' "$PWD" "$1" ;;
    esac
  }
  # Prints why $1 cannot be a directory of pendra's own (its contents are not only pendra's);
  # fails when it can be.
  unsafe_dir_reason() {
    local dir="$1" physical="$1" home="${HOME:-}" home_physical="${HOME:-}" candidate h
    while [ "$dir" != "${dir%/}" ]; do dir="${dir%/}"; done
    [ -n "$dir" ] || dir=/
    [ -d "$dir" ] && physical="$(cd "$dir" && pwd -P)"
    [ -n "$home" ] && [ -d "$home" ] && home_physical="$(cd "$home" && pwd -P)"
    for candidate in "$dir" "$physical"; do
      if [ "$candidate" = / ]; then
        echo "it is the root of the file system"
        return 0
      fi
      for h in "$home" "$home_physical"; do
        [ -n "$h" ] || continue
        if [ "$candidate" = "$h" ]; then
          echo "it is your home directory"
          return 0
        fi
        case "$h/" in "$candidate"/*)
          echo "it holds your home directory"
          return 0
          ;;
        esac
      done
    done
    return 1
  }

  local home_dir
  home_dir="$(absolute_path "${PENDRA_HOME:-$HOME/.pendra}")"
  # The worker and the service read PENDRA_HOME too: give them the same absolute directory.
  [ -z "${PENDRA_HOME:-}" ] || export PENDRA_HOME="$home_dir"
  local unsafe=""
  if unsafe="$(unsafe_dir_reason "$home_dir")"; then
    die "PENDRA_HOME=$home_dir cannot be pendra's directory: $unsafe." \
      "use a directory of its own (the default is ~/.pendra), or unset PENDRA_HOME"
  fi
  local venv="$home_dir/venv"
  local bin_dir
  bin_dir="$(absolute_path "${PENDRA_BIN_DIR:-$HOME/.local/bin}")"
  local link="$bin_dir/pendra"
  local vpy="$venv/bin/python"
  # Written by get.sh inside the venv: "installing" while a run changes it, "ready" once a run
  # finished. A venv a run did not finish (Ctrl-C, kill -9, a failed step) is made afresh.
  local venv_marker="$venv/.pendra-get"

  # ------------------------------------------------------------------------- isolated Python
  # -I: neither the current directory nor PYTHON* variables reach sys.path; and each runs from
  # /, so nothing resolves against the user's directory either.
  isolated() { (cd / && "$@"); }
  vpy_run() { isolated "$vpy" -I "$@"; }
  pendra_cli() { vpy_run -m worker "$@"; }

  # none | empty | foreign | unfinished | ready
  venv_state() {
    if [ ! -e "$venv" ] && [ ! -L "$venv" ]; then
      echo none
    elif [ -d "$venv" ] && [ ! -L "$venv" ] && [ -z "$(ls -A "$venv" 2>/dev/null)" ]; then
      echo empty
    elif [ -f "$venv_marker" ] && [ ! -L "$venv" ]; then
      if [ "$(head -c 16 "$venv_marker")" = ready ]; then echo ready; else echo unfinished; fi
    elif [ -x "$venv/bin/pendra" ] && [ -f "$venv/pyvenv.cfg" ] && [ ! -L "$venv" ]; then
      echo ready # made by a get.sh from before the marker
    else
      echo foreign
    fi
  }

  # ---------------------------------------------------------------------------------- the host
  local os arch kernel
  os="$(uname -s)"
  arch="$(uname -m)"
  kernel="$(uname -r)"
  case "$os" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) die "this installer supports Linux and macOS, not $os" "on Windows, install WSL2 (wsl --install) and run it there" ;;
  esac
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "the $arch CPU architecture is not supported (x86_64 and arm64 are)" ;;
  esac
  case "$kernel" in
    *icrosoft*WSL2* | *microsoft-standard*) note "running under WSL2" ;;
    *icrosoft*) die "WSL1 is not supported (no GPU access)" "in Windows PowerShell: wsl --set-version <distro> 2" ;;
  esac

  local pkg=""
  if [ "$os" = darwin ]; then
    pkg=brew
  elif [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091  # the host's file, read at run time
    case " $(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}") " in
      *" debian "* | *" ubuntu "*) pkg=apt ;;
      *" fedora "* | *" rhel "* | *" centos "*) pkg=dnf ;;
      *" suse "* | *" opensuse "*) pkg=zypper ;;
      *" arch "*) pkg=pacman ;;
    esac
  fi
  local sudo="sudo "
  [ "$(id -u)" = 0 ] && sudo=""

  # Asks a yes/no question at the terminal; the answer is no unless the user types yes. --yes
  # answers yes; with no terminal and no --yes it stops the script (nothing done yet).
  confirm() {
    [ "$yes" = 1 ] && return 0
    if ! (: </dev/tty) 2>/dev/null; then
      die "no terminal to ask on, so nothing was changed." "re-run with --yes to go ahead"
    fi
    local answer=""
    printf '%s [y/N] ' "$1" >&2
    read -r answer </dev/tty || answer=""
    case "$answer" in
      y | Y | yes | Yes | YES) return 0 ;;
      *) return 1 ;;
    esac
  }

  # Removes what get.sh installed: this installation's service, the link and the venv; with
  # --purge the configuration, key, logs and cache; with --remove-models the model files pendra
  # downloaded (decided by installer/teardown.py, with the worker's own settings). Lists it all and
  # asks first. Uses main's locals.
  do_uninstall() {
    local going=() kept=() removed=() model_files=() item kind path detail
    local worker_ok=0 state models_dir="" plan="" errors=""
    state="$(venv_state)"
    if [ -x "$vpy" ] && vpy_run -c 'import worker.settings' >/dev/null 2>&1; then worker_ok=1; fi

    if [ "$remove_models" = 1 ] && [ "$worker_ok" = 1 ]; then
      local plan_args=(plan-models) rc=0
      [ "$remove_all_models" = 1 ] && plan_args+=(--all)
      errors="$(mktemp "${TMPDIR:-/tmp}/pendra-uninstall.XXXXXX")"
      plan="$(vpy_run -m installer.teardown "${plan_args[@]}" 2>"$errors")" || rc=$?
      if [ "$rc" != 0 ]; then
        local first="" rest=""
        { IFS= read -r first || true; IFS= read -r rest || true; } <"$errors"
        rm -f "$errors"
        if [ "$rc" = 3 ]; then
          die "${first:-refusing to remove the models}; nothing was changed." ${rest:+"$rest"}
        fi
        die "cannot tell which models pendra installed: ${first:-exit $rc}; nothing was changed." \
          "fix the configuration in $home_dir, or uninstall without --remove-models"
      fi
      rm -f "$errors"
      while IFS=$'\t' read -r kind path detail; do
        case "$kind" in
          dir) models_dir="$path" ;;
          remove)
            model_files+=("$path")
            going+=("$path ($detail)")
            ;;
          keep) kept+=("$path ($detail)") ;;
          other) kept+=("$path: $detail") ;;
        esac
      done <<<"$plan"
    elif [ "$remove_models" = 1 ]; then
      kept+=("the models: the installed worker, which tells pendra's downloads from your own files, is gone, so none were removed (its downloads are the *.gguf files with a .gguf.meta.json beside them)")
    elif [ "$worker_ok" = 1 ]; then
      models_dir="$(vpy_run -c 'from worker.settings import load_settings; print(load_settings().models_dir)' 2>/dev/null || true)"
      if [ -n "$models_dir" ] && [ -d "$models_dir" ]; then
        kept+=("$models_dir (models; --remove-models deletes the ones pendra downloaded)")
      fi
    fi

    local running_pid=""
    if [ "$worker_ok" = 1 ]; then
      # A worker running for this home outside any service (a terminal's `pendra --no-ui`, or the
      # one the app started detached) would go on running from a deleted venv.
      running_pid="$(vpy_run -c 'import asyncio
from worker.admin.client import AdminClient
from worker.settings import load_settings
print(asyncio.run(AdminClient(load_settings().admin_socket, timeout_s=3).ping())["pid"])' 2>/dev/null || true)"
    fi
    [ -n "$running_pid" ] && going+=("the running worker (pid $running_pid): it finishes its in-flight requests, then exits")
    if [ "$worker_ok" = 1 ]; then
      if [ "$(id -u)" = 0 ]; then
        going+=("this installation's pendra service, user and system, if installed (another installation's stays)")
      else
        going+=("this installation's pendra service, if installed (another installation's stays)")
      fi
    fi
    if [ -L "$link" ]; then
      case "$(readlink "$link")" in
        "$venv"/*) going+=("$link") ;;
        *) kept+=("$link (it points elsewhere)") ;;
      esac
    elif [ -e "$link" ]; then
      kept+=("$link (not a link made by get.sh)")
    fi
    case "$state" in
      ready | unfinished | empty) going+=("$venv") ;;
      foreign) kept+=("$venv (not made by get.sh)") ;;
    esac
    [ -e "$home_dir/run" ] && going+=("$home_dir/run")
    if [ -d "$home_dir/stack" ]; then
      [ "$worker_ok" = 1 ] && going+=("the worker's Docker containers, if running (pendra stack down)")
      going+=("$home_dir/stack")
      kept+=("the Docker volumes pendra-models and pendra-home (docker volume rm pendra-models pendra-home)")
    fi
    local purgeable=()
    for item in config.yaml config.toml config.toml.migrated .config.lock worker.key workload.key sandbox logs cache; do
      [ -e "$home_dir/$item" ] && purgeable+=("$home_dir/$item")
    done
    for item in "$home_dir"/worker.key.*.bak; do
      [ -f "$item" ] && purgeable+=("$item")
    done
    for item in ${purgeable[@]+"${purgeable[@]}"}; do
      if [ "$purge" = 1 ]; then going+=("$item"); else kept+=("$item"); fi
    done

    if [ ${#going[@]} = 0 ]; then
      say "Nothing of Pendra worker is installed here ($home_dir)."
      if [ ${#kept[@]} -gt 0 ]; then
        say "Left as it is:"
        for item in "${kept[@]}"; do say "  $item"; done
      fi
      return 0
    fi
    step "Uninstalling Pendra worker from $home_dir"
    say "This removes:"
    for item in "${going[@]}"; do say "  $item"; done
    if [ ${#kept[@]} -gt 0 ]; then
      say "and keeps:"
      for item in "${kept[@]}"; do say "  $item"; done
    fi
    if ! confirm "Remove them?"; then
      say "Nothing removed."
      return 1
    fi

    if [ "$worker_ok" = 1 ]; then
      local rc=0
      pendra_cli service uninstall || rc=$?
      [ "$rc" = 0 ] || [ "$rc" = 4 ] || warn "removing the user service failed (exit $rc); continuing"
      if [ "$(id -u)" = 0 ]; then
        rc=0
        pendra_cli service uninstall --system || rc=$?
        [ "$rc" = 0 ] || [ "$rc" = 4 ] || warn "removing the system service failed (exit $rc); continuing"
      fi
      if [ -d "$home_dir/stack" ]; then
        rc=0
        pendra_cli stack down || rc=$?
        [ "$rc" = 0 ] || warn "removing the Docker containers failed (exit $rc); continuing (see: docker ps)"
      fi
      if [ -n "$running_pid" ]; then
        # After the services: a worker the service manager ran is gone already (exit 3 here).
        rc=0
        pendra_cli stop || rc=$?
        [ "$rc" = 0 ] || [ "$rc" = 3 ] ||
          warn "the worker (pid $running_pid) did not stop (exit $rc); continuing (stop it: kill -TERM $running_pid)"
      fi
    fi
    if [ ${#model_files[@]} -gt 0 ]; then
      local remove_args=(remove-models) outcome=""
      [ "$remove_all_models" = 1 ] && remove_args+=(--all)
      outcome="$(printf '%s\n' "${model_files[@]}" | vpy_run -m installer.teardown "${remove_args[@]}")" ||
        warn "some model files could not be removed (listed under Kept)"
      while IFS=$'\t' read -r kind path detail; do
        case "$kind" in
          removed) removed+=("$path") ;;
          kept) kept+=("$path ($detail)") ;;
        esac
      done <<<"$outcome"
    fi
    if [ -L "$link" ]; then
      case "$(readlink "$link")" in
        "$venv"/*)
          rm -f "$link"
          removed+=("$link")
          ;;
      esac
    fi
    case "$state" in
      ready | unfinished | empty)
        rm -rf "$venv"
        removed+=("$venv")
        ;;
    esac
    if [ -e "$home_dir/run" ]; then
      rm -rf "${home_dir:?}/run"
      removed+=("$home_dir/run")
    fi
    if [ -e "$home_dir/stack" ]; then
      rm -rf "${home_dir:?}/stack"
      removed+=("$home_dir/stack")
    fi
    if [ "$purge" = 1 ]; then
      for item in ${purgeable[@]+"${purgeable[@]}"}; do
        rm -rf "$item"
        removed+=("$item")
      done
    fi
    rmdir "$home_dir" 2>/dev/null || true

    say ""
    say "Removed:"
    for item in ${removed[@]+"${removed[@]}"}; do say "  $item"; done
    if [ ${#kept[@]} -gt 0 ]; then
      say "Kept:"
      for item in "${kept[@]}"; do say "  $item"; done
      [ "$purge" = 1 ] || [ ${#purgeable[@]} = 0 ] || say "(get.sh --uninstall --purge also removes configuration and keys)"
    fi
  }

  if [ "$uninstall" = 1 ]; then
    do_uninstall
    return 0
  fi

  # ------------------------------------------------------------------- can we talk to a person?
  local has_tty=0
  if (: </dev/tty) 2>/dev/null; then has_tty=1; fi
  if [ "$has_tty" = 0 ] && [ "$yes" = 0 ] && [ "$no_ui" = 0 ] && [ "$no_start" = 0 ]; then
    die "no terminal here, so the setup app cannot open." \
      "re-run with --yes (install, then print the next steps) or --no-ui (install and run headless)" \
      "e.g. curl -fsSL https://get.pendra.ai/worker | bash -s -- --no-ui --key-file ./worker.key"
  fi

  if [ "$has_tty" = 1 ] && [ "$yes" = 0 ] && [ "$no_ui" = 0 ]; then
    say "${bold}Pendra worker${reset} will be installed for user $(id -un) into $venv"
    say "and linked as $link. Nothing is installed system-wide."
    local answer=""
    printf 'Continue? [Y/n] ' >&2
    read -r answer </dev/tty || answer="n"
    case "$answer" in
      "" | y | Y | yes | YES) ;;
      *)
        say "Nothing installed."
        return 1
        ;;
    esac
  fi

  if [ -n "$key_file" ]; then
    { [ -f "$key_file" ] && [ -r "$key_file" ]; } || die "cannot read the key file $key_file" \
      "pass the file you downloaded from the Pendra dashboard: --key-file ./worker.key"
    key_file="$(absolute_path "$key_file")"
  fi

  local started_at=$SECONDS
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/pendra-get.XXXXXX")" || die "cannot create a temporary directory"
  # shellcheck disable=SC2064  # expand now: $work is local and gone when the trap runs
  trap "rm -rf '$work'" EXIT
  cleanup_now() {
    rm -rf "$work"
    trap - EXIT
  }
  [ -d "$home_dir" ] || (umask 077 && mkdir -p "$home_dir")
  mkdir -p "$home_dir/logs"
  local log="$home_dir/logs/install.log"
  : >"$log"
  chmod 600 "$log"

  # ------------------------------------------------------------------------ interruptions
  # Long steps run in a process group of their own (see run_logged). Ctrl-C, a hang-up or a TERM
  # stops that whole group (pip, its build and compiler processes) before get.sh exits. A
  # virtualenv interrupted while being created is removed; one interrupted later stays marked
  # "installing" (a running service may still use it) and the next run makes it afresh.
  local child_pid="" venv_phase="" py=""
  # Any live (not zombie) process in process group $1, or process $1 itself.
  group_alive() {
    if command -v ps >/dev/null 2>&1; then
      ps -A -o pgid= -o pid= -o stat= 2>/dev/null |
        awk -v g="$1" '($1 == g || $2 == g) && $3 !~ /^Z/ { found = 1 } END { exit !found }'
    else
      kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null
    fi
  }
  stop_child() {
    local pid="$child_pid" tries=0
    [ -n "$pid" ] || return 0
    child_pid=""
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while group_alive "$pid"; do
      tries=$((tries + 1))
      # 10 s to exit cleanly, then no choice; 15 s at most in all.
      [ "$tries" = 100 ] && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
      [ "$tries" -ge 150 ] && break
      sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
  }
  on_signal() {
    trap '' INT TERM HUP # a second Ctrl-C must not cut the clean-up short
    stop_child
    if [ "$venv_phase" = creating ]; then rm -rf "$venv"; fi
    say ""
    say "Interrupted: nothing is left running. Re-run get.sh to finish (it picks up from here)."
    exit "$1"
  }
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM
  trap 'on_signal 129' HUP

  # Run a command in a process group of its own, from /, with its output in the log; tick every
  # 30 s so a long build never looks stuck; on failure show the end of the log. The group lets
  # on_signal stop the command and everything it started (a background job of a script would
  # otherwise ignore Ctrl-C and outlive get.sh).
  local spawn_group='import os, signal, sys
os.setpgid(0, 0)
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])'
  run_logged() {
    local what="$1"
    shift
    printf '\n$ %s\n' "$*" >>"$log"
    (cd / && exec "$py" -I -c "$spawn_group" "$@") >>"$log" 2>&1 </dev/null &
    child_pid=$!
    local pid=$child_pid begun=$SECONDS rc=0
    local next_tick=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
      sleep 0.2
      if [ "$SECONDS" -ge "$next_tick" ]; then
        note "$what: still working ($((SECONDS - begun)) s)"
        next_tick=$((next_tick + 30))
      fi
    done
    wait "$pid" || rc=$?
    child_pid=""
    if [ "$rc" != 0 ]; then
      say "${red}failed:${reset} $what (exit $rc). Last lines of $log:"
      tail -n 25 "$log" | sed 's/^/    /' >&2
    fi
    return "$rc"
  }

  # -------------------------------------------------------------------------------- Python
  step "Finding Python 3.10 or newer"
  python_ok() { isolated "$1" -I -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; }
  python_wheels() { isolated "$1" -I -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' >/dev/null 2>&1; }
  if [ -n "${PENDRA_PYTHON:-}" ]; then
    python_ok "$PENDRA_PYTHON" || die "PENDRA_PYTHON=$PENDRA_PYTHON is not a working Python 3.10 or newer"
    py="$PENDRA_PYTHON"
  else
    # The system python3 first when prebuilt GPU wheels exist for it (3.10-3.12), then versioned
    # names, then any python3 >= 3.10.
    local candidate
    for candidate in python3 python3.12 python3.11 python3.10; do
      if command -v "$candidate" >/dev/null 2>&1 && python_wheels "$candidate"; then
        py="$candidate"
        break
      fi
    done
    if [ -z "$py" ]; then
      for candidate in python3 python3.13 python3.14; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
          py="$candidate"
          break
        fi
      done
    fi
  fi
  if [ -z "$py" ]; then
    case "$pkg" in
      apt) die "Python 3.10 or newer was not found." "${sudo}apt-get install -y python3 python3-venv   # then re-run get.sh" ;;
      dnf) die "Python 3.10 or newer was not found." "${sudo}dnf install -y python3.12   # then re-run get.sh" ;;
      brew) die "Python 3.10 or newer was not found." "brew install python@3.12   # then re-run get.sh" ;;
      *) die "Python 3.10 or newer was not found." "install Python 3.10-3.12 with your package manager, or point PENDRA_PYTHON at one" ;;
    esac
  fi
  py="$(isolated "$py" -I -c 'import sys; print(sys.executable)')" # the real interpreter, not a pyenv shim
  local py_version
  py_version="$(isolated "$py" -I -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  note "$py (Python $py_version)"

  # ---------------------------------------------------------------------------------- venv
  # Reused when get.sh made it, the last run finished, and its Python and pip work; otherwise
  # made afresh. A directory get.sh did not make is never deleted.
  venv_reusable() {
    [ "$(venv_state)" = ready ] && [ -x "$vpy" ] &&
      [ "$(vpy_run -c 'import sys, pip; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "${py_version%.*}" ]
  }
  create_venv() {
    venv_phase=creating
    rm -rf "$venv"
    mkdir -p "$venv"
    printf 'installing\n' >"$venv_marker"
    if ! run_logged "creating the virtualenv" "$py" -I -m venv "$venv"; then
      rm -rf "$venv"
      venv_phase=""
      case "$pkg" in
        apt) die "$py cannot create virtualenvs (the venv module or ensurepip is missing)." "${sudo}apt-get install -y python${py_version%.*}-venv   # then re-run get.sh" ;;
        *) die "$py cannot create virtualenvs (see $log)." "install the venv module for $py, or point PENDRA_PYTHON at another Python" ;;
      esac
    fi
  }
  local action="Installing"
  case "$(venv_state)" in
    foreign)
      die "$venv exists, but get.sh did not make it; nothing was changed." \
        "move it away (or set PENDRA_HOME to another directory), then re-run get.sh"
      ;;
    unfinished) note "the last run stopped before it finished; making the virtualenv afresh" ;;
  esac
  if venv_reusable; then
    action="Upgrading"
    step "Reusing the virtualenv $venv"
  else
    step "Creating the virtualenv $venv"
    create_venv
  fi
  local pip=("$vpy" -I -m pip --disable-pip-version-check --no-input)
  local pip_major
  pip_major="$(vpy_run -c 'import pip; print(pip.__version__.split(".")[0])' 2>/dev/null || echo 0)"
  venv_phase=""
  printf 'installing\n' >"$venv_marker"
  if [ "$pip_major" -lt 23 ]; then
    run_logged "upgrading pip" "${pip[@]}" install --upgrade "pip>=23" || die "could not upgrade pip in $venv" "see $log"
  fi

  # ------------------------------------------------------------------------- pendra-worker
  local source_spec="" source_name=""
  local self="${BASH_SOURCE[0]:-}"
  if [ -n "${PENDRA_INSTALL_SOURCE:-}" ]; then
    source_spec="$PENDRA_INSTALL_SOURCE"
    [ -n "$version" ] && warn "PENDRA_INSTALL_SOURCE is set, so --version $version is ignored"
  elif [ "$self" = "$0" ] && [ -f "$self" ] && [ -f "$(dirname "$self")/pyproject.toml" ] &&
    grep -q '^name = "pendra-worker"' "$(dirname "$self")/pyproject.toml"; then
    source_spec="$(dirname "$self")" # ./get.sh in a checkout installs that checkout
  elif [ -n "$version" ]; then
    source_spec="pendra-worker==$version"
  else
    source_spec="pendra-worker"
  fi
  if [ -e "$source_spec" ]; then
    source_spec="$(cd "$(dirname "$source_spec")" && pwd)/$(basename "$source_spec")"
    source_name="$source_spec"
  else
    source_name="$source_spec (PyPI)"
  fi

  step "$action pendra-worker from $source_name"
  local wheel=""
  case "$source_spec" in
    *.whl) wheel="$source_spec" ;;
    *)
      run_logged "building the pendra-worker wheel" "${pip[@]}" wheel --no-deps --wheel-dir "$work/wheels" "$source_spec" ||
        die "could not get pendra-worker from $source_name" "see $log"
      wheel="$(find "$work/wheels" -name 'pendra_worker-*.whl' | head -n 1)"
      ;;
  esac
  [ -f "$wheel" ] || die "no pendra-worker wheel came out of $source_name" "see $log"
  # Our own code first, without dependencies: the build choice below runs from it, and
  # llama-cpp-python must be installed the right way before pip would pull the CPU sdist.
  run_logged "installing pendra-worker" "${pip[@]}" install --force-reinstall --no-deps "$wheel" ||
    die "could not install $wheel" "see $log"

  # --------------------------------------------------------------------- llama-cpp-python
  step "Choosing the llama.cpp build for this machine"
  local accel_vars
  accel_vars="$(vpy_run -m installer.accel --shell --probe)" || die "could not decide the llama.cpp build" "see the message above"
  local PENDRA_ACCEL="" PENDRA_ACCEL_LABEL="" PENDRA_ACCEL_TARGET="" PENDRA_WHEEL_URL="" PENDRA_SOURCE_ACCEL=""
  local PENDRA_CMAKE_ARGS="" PENDRA_BUILD_MINUTES="" PENDRA_LLAMA_REQ="" PENDRA_LLAMA_PRESENT="" PENDRA_ACCEL_NOTES=""
  eval "$accel_vars"
  note "$PENDRA_ACCEL_LABEL"
  local line
  while IFS= read -r line; do [ -n "$line" ] && note "$line"; done <<<"$PENDRA_ACCEL_NOTES"

  local llama_how=""
  if [ "$PENDRA_LLAMA_PRESENT" = 1 ]; then
    llama_how="kept (already the $PENDRA_ACCEL_TARGET build)"
    note "llama-cpp-python: the $PENDRA_ACCEL_TARGET build is already installed; keeping it"
  else
    local reinstall=()
    vpy_run -c 'import importlib.metadata as m; m.version("llama-cpp-python")' >/dev/null 2>&1 &&
      reinstall=(--force-reinstall --no-deps)
    if [ -n "$PENDRA_WHEEL_URL" ]; then
      step "Installing the prebuilt $PENDRA_ACCEL_LABEL llama-cpp-python wheel"
      if run_logged "downloading llama-cpp-python" "${pip[@]}" install ${reinstall[@]+"${reinstall[@]}"} \
        --only-binary llama-cpp-python --extra-index-url "$PENDRA_WHEEL_URL" "$PENDRA_LLAMA_REQ"; then
        vpy_run -m installer.accel --write-stamp "$PENDRA_ACCEL" "$PENDRA_WHEEL_URL"
        llama_how="prebuilt $PENDRA_ACCEL_LABEL wheel"
      else
        warn "the prebuilt wheel did not install; building from source instead"
      fi
    fi
    if [ -z "$llama_how" ]; then
      local target="$PENDRA_SOURCE_ACCEL" label
      case "$target" in
        cuda) label="CUDA" ;;
        metal) label="Metal" ;;
        vulkan) label="Vulkan" ;;
        *) label="the CPU" ;;
      esac
      step "Building llama.cpp for $label, this takes ~$PENDRA_BUILD_MINUTES minutes (once: re-runs reuse it)"
      local no_cache=()
      # pip's wheel cache ignores CMAKE_ARGS: a cached CPU wheel would silently replace a GPU build.
      [ "$target" != cpu ] && no_cache=(--no-cache-dir --no-binary llama-cpp-python)
      CMAKE_ARGS="$PENDRA_CMAKE_ARGS" run_logged "building llama-cpp-python" \
        "${pip[@]}" install ${reinstall[@]+"${reinstall[@]}"} ${no_cache[@]+"${no_cache[@]}"} "$PENDRA_LLAMA_REQ" ||
        die "building llama-cpp-python failed" "a C/C++ compiler and cmake are needed: ${sudo}apt-get install -y build-essential cmake (Debian/Ubuntu), xcode-select --install (macOS)" "full log: $log"
      vpy_run -m installer.accel --write-stamp "$target" source
      llama_how="built from source for $label"
    fi
  fi

  step "Installing the remaining dependencies"
  # --docker: also the `docker` extra (the Docker SDK) that `pendra stack` needs.
  local wanted="$wheel"
  [ "$docker" = 1 ] && wanted="${wheel}[docker]"
  run_logged "installing dependencies" "${pip[@]}" install "$wanted" ||
    die "could not install pendra-worker's dependencies" "see $log"
  local installed
  installed="$(pendra_cli --version 2>>"$log")" || die "the installed pendra does not start" "see $log"
  printf 'ready\n' >"$venv_marker"

  # ---------------------------------------------------------------------------------- link
  local path_hint=""
  mkdir -p "$bin_dir"
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    warn "$link exists and is not a link made by get.sh; leaving it alone (use $venv/bin/pendra)"
  else
    ln -sfn "$venv/bin/pendra" "$link"
  fi
  case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) path_hint="$bin_dir is not on your PATH: add  export PATH=\"$bin_dir:\$PATH\"  to ~/.bashrc (or ~/.zshrc)" ;;
  esac

  # ----------------------------------------------------------------------------------- key
  local key_note=""
  if [ -n "$key_file" ]; then
    step "Storing the worker key"
    pendra_cli key set --file "$key_file" || die "could not store the worker key from $key_file" "check the file, then: pendra key set --file $key_file"
    key_note="worker key stored (0600) in $home_dir"
  fi

  # ------------------------------------------------------------------------------- summary
  say ""
  say "${green}${bold}$installed is ready${reset} ($((SECONDS - started_at)) s)"
  say "  venv:       $venv"
  say "  command:    $link"
  say "  llama.cpp:  $llama_how"
  [ -n "$key_note" ] && say "  key:        $key_note"
  say "  log:        $log"
  [ -n "$path_hint" ] && warn "$path_hint"

  local pendra_cmd="pendra"
  [ -n "$path_hint" ] && pendra_cmd="$link"
  if [ "$no_start" = 1 ]; then
    say ""
    say "Next: $pendra_cmd          # set up (worker key, backends, models), then the dashboard"
    say "  or: $pendra_cmd --no-ui  # run headless; \`$pendra_cmd doctor\` checks the machine"
    return 0
  fi
  if [ "$no_ui" = 1 ]; then
    local key_state
    key_state="$(vpy_run -c 'from worker.settings import load_settings; k = load_settings().key_location(); print("present" if k.present else "missing")' 2>>"$log")" ||
      die "the configuration in $home_dir cannot be read" "run: $pendra_cmd doctor"
    [ "$key_state" = present ] || die "installed, but not started: the worker has no key yet." \
      "store it: $pendra_cmd key set   (or re-run get.sh with --key-file FILE), then: $pendra_cmd $([ "$docker" = 1 ] && echo "stack up" || echo "service install")"
    if [ "$docker" = 1 ]; then
      step "Starting the worker in Docker"
      pendra_cli stack up ||
        die "could not start the worker in Docker" "see the message above; \`$pendra_cmd doctor\` checks Docker (install it from https://docs.docker.com/engine/install/)"
      say "The worker runs in Docker. Check it with: $pendra_cmd status   (container: $pendra_cmd stack status, logs: $pendra_cmd stack logs -f)"
      return 0
    fi
    step "Starting the worker headless"
    local rc=0
    pendra_cli service install || rc=$?
    if [ "$rc" = 0 ]; then
      say "The worker runs as a service. Check it with: $pendra_cmd status   (logs: $pendra_cmd logs)"
      return 0
    fi
    if [ "$rc" = 4 ]; then
      say "No service manager here: running the worker in the foreground (Ctrl-C stops it)."
      cleanup_now
      exec "$vpy" -I -m worker --no-ui </dev/null
    fi
    die "could not install the service (exit $rc)" "see the message above; run headless by hand: $pendra_cmd --no-ui"
  fi
  if [ "$has_tty" = 1 ]; then
    say ""
    # The app reads keys from stdin; under `curl | bash` stdin is the pipe, so hand it the terminal.
    cleanup_now
    exec "$vpy" -I -m worker </dev/tty
  fi
  say ""
  say "Next, in a terminal: $pendra_cmd   (or headless: $pendra_cmd --no-ui)"
  return 0
}

main "$@"
