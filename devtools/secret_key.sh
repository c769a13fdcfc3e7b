# Sourced by devtools/run.sh: the local stack signs its tokens with a key of its own,
# never the published development placeholder (chatbot/settings.py). Unless SECRET_KEY
# is set, a random key is generated once into $STACK_VAR/secret_key (mode 0600) and
# exported; later runs read the same file, so tokens survive a restart. `make clean`
# (or deleting the file) makes a new one, and every token issued before stops working.
if [ -z "${SECRET_KEY:-}" ]; then
  if [ ! -s "$STACK_VAR/secret_key" ]; then
    mkdir -p "$STACK_VAR"
    (
      umask 077
      python3 -c "import secrets; print(secrets.token_hex(32))" >"$STACK_VAR/secret_key.tmp"
      mv "$STACK_VAR/secret_key.tmp" "$STACK_VAR/secret_key"
    )
  fi
  SECRET_KEY=$(cat "$STACK_VAR/secret_key")
  export SECRET_KEY
fi
