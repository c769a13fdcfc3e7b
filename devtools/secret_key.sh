# Sourced by devtools/run.sh: the local stack's secrets, each random and its own, never
# the published development placeholder (chatbot/settings.py).
# - SECRET_KEY signs tokens: unless set, generated once into $STACK_VAR/secret_key.
# - PROXY_SECRET is what nginx sends the instances so that they trust its
#   X-Forwarded-For (chatbot/proxy.py): unless set, generated once into
#   $STACK_VAR/proxy_secret; the renderer and the instances read it from the environment.
# Each file has mode 0600 and is kept across runs, so tokens survive a restart. `make
# clean` (or deleting the file) makes a new one; a new SECRET_KEY ends every token issued
# before.
stack_secret() {  # stack_secret VARIABLE FILE: export VARIABLE, from FILE unless set
  local name=$1 file=$2
  if [ -z "${!name:-}" ]; then
    if [ ! -s "$file" ]; then
      mkdir -p "$(dirname "$file")"
      (
        umask 077
        python3 -c "import secrets; print(secrets.token_hex(32))" >"$file.tmp"
        mv "$file.tmp" "$file"
      )
    fi
    printf -v "$name" '%s' "$(cat "$file")"
  fi
  export "${name?}"
}
stack_secret SECRET_KEY "$STACK_VAR/secret_key"
stack_secret PROXY_SECRET "$STACK_VAR/proxy_secret"
